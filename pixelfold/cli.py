"""The ``pixelfold`` command line: one entry point with subcommands.

Subcommands are registered in [`COMMANDS`][pixelfold.cli.COMMANDS] by name, in the order
``pixelfold --help`` lists them: a builder takes argparse's subparsers, adds its parser and sets
``func`` (the function run with the parsed arguments, returning the exit status). To add one,
decorate a builder with ``@command("name")``.

Bad input (a missing folder, a bad seed list, an unknown preset, a size that cannot fit in
memory, weights holding NaN, ...) prints one line ``pixelfold COMMAND: error: ...`` on stderr
and exits with status 2, without a traceback: every error of ``pixelfold.utils.USER_ERRORS``,
through ``pixelfold.utils.run_main``. Any other exception is a bug in pixelfold: its traceback
is shown and the status is 1. ``--debug`` (or ``PIXELFOLD_DEBUG=1``) shows the traceback of
every error. The image work itself lives in [`pixelfold.tools`][pixelfold.tools], usable from
Python.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .layers import EMBEDDING_PADDINGS, NOISE_MODES
from .metrics.profile import CONVENTIONS
from .tools.project import DISTANCES, SPACES
from .training.data import RESIZE_FILTERS
from .training.evaluation import TRAIN_METRICS
from .utils.errors import ConfigError, debug_enabled, run_main

if TYPE_CHECKING:
    from .models import Generator
    from .tools import WLatents

__all__ = ["COMMANDS", "CLIError", "build_parser", "command", "main"]

logger = logging.getLogger("pixelfold")

PSI_RANGE = (-1.0, 2.0)
"""Truncation values the CLI accepts (the Python API takes any float)."""

MODEL_HELP = ("a preset name (randomly initialized, untrained weights; see "
              "pixelfold.models.presets.names()) or a save_pretrained folder "
              "(config.json + model.safetensors)")

LATENTS_HELP = ("a seed list ('0-15', '1,5,9' or '0-3,10', ranges inclusive) or an .npz file "
                "of ws (pixelfold project's projected_w.npz, or NVlabs')")
"""Help of every argument that takes seeds: each also takes a file of projected ws."""

LATENTS_NOTE = """\
Wherever seeds are asked for, an .npz file of per-layer latents ws can be given instead (the
projected_w.npz of 'pixelfold project', or of NVlabs' projector): its images are used in place
of the seeds' (truncation applies to them too), labeled with their names."""


class CLIError(ConfigError):
    """A bad command-line argument: reported to the user as one line, exit status 2 (a
    ``ConfigError``, so a ``ValueError``)."""


Builder = Callable[[Any], None]
COMMANDS: dict[str, Builder] = {}
"""Subcommand builders by name: ``builder(subparsers)`` adds the subcommand's parser."""


def command(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a subcommand builder under ``name``."""

    def wrap(fn: Builder) -> Builder:
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered")
        COMMANDS[name] = fn
        return fn

    return wrap


# ---------------------------------------------------------------------------------------------
# shared arguments and checks


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)


def _add_sampling(p: argparse.ArgumentParser, *, batch_size: int = 16) -> None:
    p.add_argument("--truncation", "--trunc", dest="truncation", type=float, default=1.0,
                   metavar="PSI",
                   help=f"truncation psi in [{PSI_RANGE[0]:g}, {PSI_RANGE[1]:g}]: "
                        "w_avg + psi (w - w_avg); 1 disables it, 0 gives the average image "
                        "(default: 1)")
    p.add_argument("--noise-mode", choices=NOISE_MODES, default="const",
                   help="per-pixel noise: const (the stored noise images, reproducible), "
                        "random (fresh each image) or none (default: const)")
    p.add_argument("--batch-size", type=int, default=batch_size, metavar="N",
                   help=f"images per forward pass (default: {batch_size})")
    p.add_argument("--device", default=None,
                   help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available, "
                        "else cpu)")


CLASS_HELP = ("the class of a class-conditional model: its index or its name (as the "
              "training data named it); required for a conditional model, refused for an "
              "unconditional one")


def _add_class(p: argparse.ArgumentParser, *, every: str = "") -> None:
    p.add_argument("--class", dest="class_", default=None, metavar="K",
                   help=CLASS_HELP + every)


def _class_of(G: Generator, args: argparse.Namespace, *, every: bool = False
              ) -> int | str | None:
    """The class of ``--class`` for ``G``: an index, ``"all"`` (with ``every``), or ``None``
    for an unconditional model."""
    which = args.class_
    if not G.c_dim:
        if which is not None:
            raise CLIError(f"--class {which}: {args.model} is unconditional (it has no "
                           f"classes)")
        return None
    names = G.class_names
    listed = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")
    if which is None:
        raise CLIError(f"{args.model} is class-conditional ({G.c_dim} classes: {listed}): "
                       f"pass --class K, an index or a class name"
                       + (", or --class all for every class" if every else ""))
    if every and which.strip().lower() == "all":
        return "all"
    with _flag(f"--class {which}"):
        return G.class_index(which)


def _add_figure(p: argparse.ArgumentParser) -> None:
    """``--out`` (the .png) and ``--no-labels`` of the commands that draw one figure."""
    p.add_argument("--out", required=True, metavar="PATH", help="the .png to write")
    p.add_argument("--no-labels", action="store_true", help="images only, no text")


def _seeds(text: str, flag: str) -> Sequence[int] | WLatents:
    """A seed list, or the latents of an ``.npz`` file (read now; checked against the model
    by [`_fitting`][pixelfold.cli._fitting] once it is loaded)."""
    from .tools import load_projected_w, parse_seeds

    try:
        if text.strip().lower().endswith(".npz"):
            return load_projected_w(text.strip())
        return parse_seeds(text)
    except (ValueError, OSError) as exc:
        raise CLIError(f"{flag}: {exc}") from None


def _fitting(G: Generator, latents: Sequence[int] | WLatents, flag: str) -> None:
    """Refuse latents of an ``.npz`` whose shape does not fit ``G``."""
    from .tools import WLatents

    if isinstance(latents, WLatents):
        try:
            latents.for_generator(G)
        except ValueError as exc:
            raise CLIError(f"{flag} {exc}") from None


def _label(latent: int | str) -> str:
    """The file name (without suffix) of one image: seed0007, or a latent's label."""
    return f"seed{latent:04d}" if isinstance(latent, int) else str(latent)


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise CLIError(f"{flag} must be >= 1, got {value}")
    return value


def _check_psi(psi: float) -> float:
    lo, hi = PSI_RANGE
    if not lo <= psi <= hi:
        raise CLIError(f"--truncation {psi:g} is out of range: psi must be in [{lo:g}, {hi:g}]")
    return psi


def _check_writable_parent(path: Path, flag: str) -> None:
    """The first existing ancestor of ``path`` must be a writable folder."""
    import os

    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise CLIError(f"{flag} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"{flag} {path}: cannot write in {parent} (permission denied or a "
                       f"read-only file system)")


def _not_empty(path: str, flag: str) -> None:
    if not path.strip():
        raise CLIError(f"{flag} is empty: give a path (use '.' for the current folder)")


def _output_file(path: str, suffixes: Sequence[str], flag: str = "--out") -> Path:
    _not_empty(path, flag)
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise CLIError(f"{flag} {path}: expected a {' or '.join(suffixes)} file name")
    if out.is_dir():
        raise CLIError(f"{flag} {path} is a folder; expected a {' or '.join(suffixes)} file")
    _check_writable_parent(out, flag)
    return out


def _output_dir(path: str, flag: str = "--out") -> Path:
    """A folder that files are written into (created with its parents)."""
    _not_empty(path, flag)
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{flag} {path} exists and is not a folder")
    _check_writable_parent(out / "x", flag)
    return out


def _output_folder_swap(path: str, flag: str) -> Path:
    """A folder written as a whole beside itself and swapped into place
    (``pixelfold.utils.atomic_directory``): its parent must be writable, and an existing
    folder must be writable too (a read-only folder is not replaced)."""
    import os

    _not_empty(path, flag)
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{flag} {path} exists and is not a folder")
    _check_writable_parent(out, flag)
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise CLIError(f"{flag} {path}: the folder is read-only (permission denied or a "
                       f"read-only file system)")
    return out


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
    except RuntimeError as exc:  # imageio-ffmpeg without a usable ffmpeg binary
        raise CLIError(f"cannot write {path}: {exc}") from None


@contextmanager
def _flag(flag: str) -> Iterator[None]:
    """A ``ValueError`` raised inside is a bad value of ``flag``: ``FLAG: message``."""
    try:
        yield
    except ValueError as exc:
        raise CLIError(f"{flag}: {exc}") from None


def _device(args: argparse.Namespace) -> Any:
    """The ``torch.device`` of ``--device`` (default: CUDA when there is one)."""
    from .tools import resolve_device

    with _flag("--device"):
        return resolve_device(args.device)


def _save_figure(figure: Any, out: Path, message: str) -> None:
    """Write the PIL ``figure`` to ``out`` (errors as one line) and print ``message``."""
    from .tools import save_image

    with _writing(out):
        save_image(figure, out)
    print(message)


def _progress() -> bool:
    return sys.stderr.isatty()


def _load(args: argparse.Namespace) -> Generator:
    """The generator named by ``args.model`` on ``args.device``, after checking the common
    arguments (so that bad input fails before any model is built)."""
    from .models import load_generator

    if hasattr(args, "truncation"):
        _check_psi(args.truncation)
    if hasattr(args, "batch_size"):
        _positive(args.batch_size, "--batch-size")
    return load_generator(args.model, device=_device(args))


def _sampling_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(truncation_psi=args.truncation, noise_mode=args.noise_mode,
                batch_size=args.batch_size, progress=_progress())


# ---------------------------------------------------------------------------------------------
# generate

GENERATE_DESCRIPTION = """\
Generate one image per seed. The latent of seed s is
torch.randn(1, z_dim, generator=torch.Generator().manual_seed(s)), as in NVlabs' scripts.

Without --grid, OUT is a folder and gets seed0000.png, seed0001.png, ... (one per seed; for
an .npz of ws, NAME.png with the names it holds). With --grid, OUT is a .png file holding all
images in a grid of ceil(sqrt(N)) columns, in seed order, row by row.

Every pixel is computed from its coordinates, so --shift and --zoom render another part of
the coordinate plane, outside the training frame too: --shift DX,DY moves the window by DX
frames to the right and DY down (1,0 is the frame to the right), --zoom S magnifies it S
times about its center (0.5 shows twice as much, smaller). --panorama N puts N windows side
by side, each shifted by one window width, the given window in the middle: one image N
frames wide per seed (a grid of them has one column). Stage 0's learned coordinate embedding
is a fixed grid: outside it, it takes its edge values (--embedding-padding border), its
mirror image (reflection) or zero (zeros); between its points it is interpolated. What a
trained model gives out there, artifacts included, is shown in the docs (Tools: coordinate
rendering); const noise stays tied to the image's pixels, not to the coordinates.

A class-conditional model needs --class K (an index or a class name): every image is of
class K. --class all makes every class: with --grid one row per class (in class order) and
one column per seed; without, NAME-classK.png files (K the index). Without --class, a
conditional model is an error that lists its classes.

""" + LATENTS_NOTE


@command("generate")
def _build_generate(sub: Any) -> None:
    p = sub.add_parser("generate", help="images from seeds (one PNG each, or a grid)",
                       description=GENERATE_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model(p)
    p.add_argument("--seeds", required=True, help=LATENTS_HELP)
    p.add_argument("--out", required=True, metavar="PATH",
                   help="folder for one PNG per seed, or a .png file with --grid")
    p.add_argument("--grid", action="store_true", help="write one grid PNG instead")
    p.add_argument("--shift", default=None, metavar="DX,DY",
                   help="move the coordinate window by DX, DY frames (x right, y down; "
                        "default: 0,0, the training frame)")
    p.add_argument("--zoom", default=None, metavar="S",
                   help="magnify the coordinate window S times about its center (> 0; "
                        "default: 1)")
    p.add_argument("--panorama", type=int, default=None, metavar="N",
                   help="N windows side by side, each one window width further right "
                        "(one image N frames wide per seed)")
    p.add_argument("--embedding-padding", choices=EMBEDDING_PADDINGS,
                   default="border",
                   help="the learned coordinate embedding outside its grid: edge values, "
                        "mirrored, or zero (default: border)")
    _add_class(p, every="; 'all': every class (a row per class with --grid)")
    _add_sampling(p)
    p.set_defaults(func=_cmd_generate)


def _window(args: argparse.Namespace) -> Any:
    """The coordinate window of ``--shift``, ``--zoom`` and ``--embedding-padding`` (``None``
    for the training frame), checked before any model is loaded."""
    from .tools import MAX_PANORAMA, make_window, parse_shift, parse_zoom

    with _flag("--shift"):
        shift = parse_shift(args.shift) if args.shift is not None else (0.0, 0.0)
    with _flag("--zoom"):
        zoom = parse_zoom(args.zoom) if args.zoom is not None else 1.0
    if args.panorama is not None and not 1 <= args.panorama <= MAX_PANORAMA:
        raise CLIError(f"--panorama {args.panorama}: give 1 to {MAX_PANORAMA} windows")
    window = make_window(shift, zoom, args.embedding_padding)
    return None if window.is_identity else window  # the padding matters only outside


def _cmd_generate(args: argparse.Namespace) -> int:
    seeds = _seeds(args.seeds, "--seeds")
    if args.grid:
        out = _output_file(args.out, [".png"])
    else:
        if Path(args.out).suffix.lower() == ".png":
            raise CLIError(f"--out {args.out} looks like a file name: pass --grid for one grid "
                           f"image, or a folder for one PNG per seed")
        out = _output_dir(args.out)
    window = _window(args)
    G = _load(args)
    _fitting(G, seeds, "--seeds")
    which = _class_of(G, args, every=True)

    from .tools import generate_images, image_grid, iter_images, panorama_images, save_image

    kwargs = _sampling_kwargs(args)
    what = "panoramas" if args.panorama else "images"
    if which == "all":
        return _generate_every_class(args, G, seeds, out, window, kwargs, what)
    kwargs["c"] = which
    with _writing(out):
        if args.grid and args.panorama:
            save_image(image_grid(panorama_images(G, seeds, args.panorama, window=window,
                                                  **kwargs), ncols=1), out)
            print(f"wrote a grid of {len(seeds)} {what} to {out}")
        elif args.grid:
            save_image(image_grid(generate_images(G, seeds, window=window, **kwargs)), out)
            print(f"wrote a grid of {len(seeds)} {what} to {out}")
        elif args.panorama:  # one batch at a time
            for start in range(0, len(seeds), args.batch_size):
                batch_seeds = seeds[start:start + args.batch_size]
                images = panorama_images(G, batch_seeds, args.panorama, window=window, **kwargs)
                for seed, image in zip(batch_seeds, images, strict=True):
                    save_image(image, out / f"{_label(seed)}.png")
            print(f"wrote {len(seeds)} {what} to {out}")
        else:  # one batch at a time: any number of seeds in constant memory
            for batch_seeds, images in iter_images(G, seeds, window=window, **kwargs):
                for seed, image in zip(batch_seeds, images, strict=True):
                    save_image(image, out / f"{_label(seed)}.png")
            print(f"wrote {len(seeds)} {what} to {out}")
    return 0


def _generate_every_class(args: argparse.Namespace, G: Generator, seeds: Any, out: Path,
                          window: Any, kwargs: dict[str, Any], what: str) -> int:
    """``generate --class all``: a grid with a row per class, or a file per seed and class."""
    import torch

    from .tools import generate_images, image_grid, iter_images, panorama_images, save_image

    def images_of(k: int, batch: Any) -> torch.Tensor:
        if args.panorama:
            return panorama_images(G, batch, args.panorama, window=window, c=k, **kwargs)
        return generate_images(G, batch, window=window, c=k, **kwargs)

    with _writing(out):
        if args.grid:
            rows = [images_of(k, seeds) for k in range(G.c_dim)]
            save_image(image_grid(torch.cat(rows), ncols=len(seeds)), out)
            print(f"wrote a grid of {len(seeds)} {what} for each of {G.c_dim} classes (a row "
                  f"per class) to {out}")
            return 0
        for k in range(G.c_dim):
            if args.panorama:
                for start in range(0, len(seeds), args.batch_size):
                    batch = seeds[start:start + args.batch_size]
                    for seed, image in zip(batch, images_of(k, batch), strict=True):
                        save_image(image, out / f"{_label(seed)}-class{k}.png")
            else:
                for batch, images in iter_images(G, seeds, window=window, c=k, **kwargs):
                    for seed, image in zip(batch, images, strict=True):
                        save_image(image, out / f"{_label(seed)}-class{k}.png")
        print(f"wrote {len(seeds)} {what} for each of {G.c_dim} classes to {out}")
    return 0


# ---------------------------------------------------------------------------------------------
# mix

MIX_DESCRIPTION = """\
Stage-wise style mixing (the PixelFolder paper's Fig. C). Each mixed image keeps the styles
(ws) of its row seed, except the crossover's styles, which come from its column seed.

--crossover (repeatable, default: stage):
  stage     one block per stage: the ws that stage reads (G.synthesis.style_ranges())
  stage:K   stage K only
  N         StyleGAN's crossover point: ws[N:] from the column seed

Layout of OUT (one block per crossover, side by side, labeled on top):

                  stage 0: ws 0-4          stage 1: ws 4-8
                  seed 10   seed 11        seed 10   seed 11
                  [col 10]  [col 11]       [col 10]  [col 11]
  seed 1  [row 1] [mix]     [mix]          [mix]     [mix]
  seed 2  [row 2] [mix]     [mix]          [mix]     [mix]

The first column holds the row source images, the first row of each block the column
source images; white gaps separate sources from mixes and blocks from each other.
--no-labels leaves out the text. A class-conditional model needs --class K: every latent,
row and column, is mapped with class K.

""" + LATENTS_NOTE


@command("mix")
def _build_mix(sub: Any) -> None:
    p = sub.add_parser("mix", help="stage-wise style-mixing grid (paper Fig. C)",
                       description=MIX_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model(p)
    p.add_argument("--rows", required=True,
                   help="the row latents, e.g. '1,2,3': " + LATENTS_HELP)
    p.add_argument("--cols", required=True,
                   help="the column latents, e.g. '10,11': " + LATENTS_HELP)
    p.add_argument("--crossover", action="append", default=None, metavar="stage|stage:K|N",
                   help="what the column latent gives (repeatable; default: stage)")
    _add_figure(p)
    _add_class(p)
    _add_sampling(p)
    p.set_defaults(func=_cmd_mix)


def _cmd_mix(args: argparse.Namespace) -> int:
    import re

    rows = _seeds(args.rows, "--rows")
    cols = _seeds(args.cols, "--cols")
    out = _output_file(args.out, [".png"])
    crossovers = args.crossover or ["stage"]
    for c in crossovers:  # the syntax now, the ranges once the model is known
        if not re.fullmatch(r"stage|stage:\d+|\d+", c.strip()):
            raise CLIError(f"--crossover {c!r}: expected 'stage', 'stage:K' or an integer "
                           f"index into ws")
    G = _load(args)
    _fitting(G, rows, "--rows")
    _fitting(G, cols, "--cols")
    which = _class_of(G, args)

    from .tools import mix_figure, resolve_crossovers, style_mix_images

    with _flag("--crossover"):
        resolve_crossovers(G, crossovers)
    row_images, col_images, mixed, resolved = style_mix_images(G, rows, cols, crossovers,
                                                               c=which, **_sampling_kwargs(args))
    figure = mix_figure(row_images, col_images, mixed, resolved, row_seeds=rows,
                        col_seeds=cols, labels=not args.no_labels)
    _save_figure(figure, out, f"wrote {len(rows)}x{len(cols)} mixes for {len(resolved)} "
                              f"crossovers ({figure.width}x{figure.height}) to {out}")
    return 0


# ---------------------------------------------------------------------------------------------
# interpolate

INTERPOLATE_DESCRIPTION = """\
Walk through the latents of the seeds, in order: STEPS frames from each seed to the next,
both ends included (STEPS frames for two seeds, (len(seeds) - 1) * (STEPS - 1) + 1 in all).

--space z interpolates the Gaussian latents z and maps every frame (default method slerp:
the angle between the two z sets the path, so it keeps their norm instead of cutting
through the short vectors in between); --space w interpolates the mapped latents w
(truncation applied) with lerp, every layer's. Keep --noise-mode const (the default) for a
smooth animation.

Writes any of: a one-row PNG strip of all frames (--out), an animated GIF (--gif, Pillow)
and an MP4 (--mp4, needs the optional imageio-ffmpeg package). A class-conditional model
needs --class K: the walk stays in class K.

""" + LATENTS_NOTE + """ Projected ws have no z: they are
interpolated in w space (the default --space for them)."""


@command("interpolate")
def _build_interpolate(sub: Any) -> None:
    p = sub.add_parser("interpolate", help="latent interpolation: PNG strip, GIF, MP4",
                       description=INTERPOLATE_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model(p)
    p.add_argument("--seeds", required=True,
                   help="two or more key latents, e.g. '0,7': " + LATENTS_HELP)
    p.add_argument("--steps", type=int, default=8,
                   help="frames from one seed to the next, ends included (default: 8)")
    p.add_argument("--space", choices=["z", "w"], default=None,
                   help="interpolate z (then map) or w (default: z for seeds, w for an .npz "
                        "of ws)")
    p.add_argument("--method", choices=["lerp", "slerp"], default=None,
                   help="default: slerp in z, lerp in w (slerp is only for z)")
    p.add_argument("--out", metavar="PATH", help="a .png strip of all frames")
    p.add_argument("--gif", metavar="PATH", help="an animated .gif")
    p.add_argument("--mp4", metavar="PATH", help="an .mp4 (needs imageio-ffmpeg)")
    p.add_argument("--fps", type=float, default=12.0,
                   help="frames per second of the GIF / MP4 (default: 12)")
    _add_class(p)
    _add_sampling(p)
    p.set_defaults(func=_cmd_interpolate)


def _cmd_interpolate(args: argparse.Namespace) -> int:
    from .tools import WLatents

    seeds = _seeds(args.seeds, "--seeds")
    if len(seeds) < 2:
        raise CLIError(f"--seeds {args.seeds}: interpolation needs at least two seeds")
    if args.steps < 2:
        raise CLIError(f"--steps must be >= 2 (both ends are frames), got {args.steps}")
    given = isinstance(seeds, WLatents)
    if args.space is None:
        args.space = "w" if given else "z"
    if given and args.space == "z":
        raise CLIError(f"--space z: the ws of {args.seeds} have no z; interpolate them with "
                       f"--space w")
    if args.space == "w" and args.method == "slerp":
        raise CLIError("--method slerp is for --space z (Gaussian latents); w uses lerp")
    if not args.fps > 0:
        raise CLIError(f"--fps must be > 0, got {args.fps:g}")
    if args.out is None and args.gif is None and args.mp4 is None:
        raise CLIError("nothing to write: give --out STRIP.png, --gif ANIM.gif and/or "
                       "--mp4 VIDEO.mp4")
    strip = _output_file(args.out, [".png"]) if args.out is not None else None
    gif = _output_file(args.gif, [".gif"], "--gif") if args.gif is not None else None
    mp4 = _output_file(args.mp4, [".mp4"], "--mp4") if args.mp4 is not None else None
    if mp4 is not None:
        import importlib.util

        if importlib.util.find_spec("imageio_ffmpeg") is None:
            raise CLIError("--mp4 needs the optional imageio-ffmpeg package "
                           "(pip install imageio-ffmpeg); --gif works without it")
    G = _load(args)
    _fitting(G, seeds, "--seeds")
    which = _class_of(G, args)

    from .tools import image_grid, interpolation_frames, save_gif, save_image, save_mp4

    frames = interpolation_frames(G, seeds, args.steps, space=args.space, method=args.method,
                                  c=which, **_sampling_kwargs(args))
    for path, write in ((strip, lambda p: save_image(image_grid(frames, len(frames)), p)),
                        (gif, lambda p: save_gif(frames, p, fps=args.fps)),
                        (mp4, lambda p: save_mp4(frames, p, fps=args.fps))):
        if path is not None:
            with _writing(path):
                write(path)
            print(f"wrote {len(frames)} frames to {path}")
    return 0


# ---------------------------------------------------------------------------------------------
# stages

STAGES_DESCRIPTION = """\
Each stage's RGB output side by side (the PixelFolder paper's Fig. 6): rows are seeds,
columns are stages, the last column is the final image. Every stage output is upsampled
(nearest) to the final resolution. Labels: 'seed N' on the left, 'stage K (RxR)' on top with
the stage's native resolution (--no-labels leaves them out).

""" + LATENTS_NOTE


@command("stages")
def _build_stages(sub: Any) -> None:
    p = sub.add_parser("stages", help="every stage's output side by side (paper Fig. 6)",
                       description=STAGES_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model(p)
    p.add_argument("--seeds", required=True, help="e.g. '0-3': " + LATENTS_HELP)
    _add_figure(p)
    _add_sampling(p)
    p.set_defaults(func=_cmd_stages)


def _cmd_stages(args: argparse.Namespace) -> int:
    seeds = _seeds(args.seeds, "--seeds")
    out = _output_file(args.out, [".png"])
    G = _load(args)
    _fitting(G, seeds, "--seeds")

    from .tools import stage_images, stages_figure

    stages = stage_images(G, seeds, **_sampling_kwargs(args))
    resolutions = [tuple(s.blocks[-1].output_resolution) for s in G.synthesis.stages]
    figure = stages_figure(stages, seeds=seeds, stage_resolutions=resolutions,
                           labels=not args.no_labels)
    _save_figure(figure, out, f"wrote {len(seeds)} seeds x {stages.shape[1]} stages to {out}")
    return 0


# ---------------------------------------------------------------------------------------------
# project

PROJECT_DESCRIPTION = """\
Project images into the model's latent space, as NVlabs' StyleGAN2-ADA projector does: Adam
on w (--space w, one w per image, NVlabs) or on every layer's w (--space wplus) and on the
per-layer noise images, for --num-steps steps (default 1000). w starts at the average of
--w-avg-samples mapped latents; noise of 5% of their spread is added to w and fades out over
the first 75% of the steps; the learning rate (--lr, 0.1) ramps up over the first 5% and down
(half cosine) over the last 25%; the noise images are regularized (weight 1e5) and
normalized after every step (--fixed-noise keeps the model's stored noise instead).

The distance is LPIPS-VGG16 (--distance lpips, the default): torch-fidelity's network, from
the weights files the metrics use (--lpips-weights, --vgg16-weights or PIXELFOLD_LPIPS_WEIGHTS,
PIXELFOLD_VGG16_WEIGHTS, else the torch hub cache, else a download; offline, HF_HUB_OFFLINE=1,
without them the command stops before any work). Images larger than 256 are compared at
256 (area downsampling, NVlabs), smaller than 32 at 32 (bilinear), others at their size.
--distance mse compares pixels (no weights needed).

Every --target (a file, or a folder of images; repeatable) is center-cropped to the model's
aspect ratio and resized to its resolution with a Lanczos filter, as NVlabs does (a note
says so for each image of another size); targets are optimized --batch-size at a time, the
batch starting at target i with seed --seed + i.

OUT gets, for each target NAME (its file name without the suffix):
  NAME.target.png   the target as compared (cropped, resized)
  NAME.proj.png     the projection: the model's image of the projected ws
  NAME.compare.png  target | projection (| tuned projection) side by side
  NAME.proj.gif/mp4 the optimization, target | projection every --video-every steps
                    (--save-video gif or mp4; mp4 needs imageio-ffmpeg)
and projected_w.npz with the arrays w (N, num_ws, w_dim) float32 (for --space w, every row
of an image is the same w, as NVlabs stores it), names, targets, distance and meta (JSON:
model, space, steps, distance kind, seed, ...). Every command that takes seeds takes this
file instead (e.g. pixelfold generate MODEL --seeds OUT/projected_w.npz --out DIR renders
the projections again, as NAME.proj.png shows them: with the model's stored noise).

--tune-steps N then fine-tunes the generator around the found ws (pivotal tuning, PTI): Adam
at --tune-lr (3e-4) on L2 + LPIPS (L2 only with --distance mse), the ws fixed, all targets
together; the tuned generator is saved in OUT/generator_tuned (a save_pretrained folder) and
its images as NAME.tuned.png."""


@command("project")
def _build_project(sub: Any) -> None:
    p = sub.add_parser("project", help="images into latents (NVlabs' projector, PTI)",
                       description=PROJECT_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model(p)
    p.add_argument("--target", action="append", required=True, metavar="IMAGE",
                   help="an image file or a folder of images (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    p.add_argument("--space", choices=SPACES, default="w",
                   help="one w per image (NVlabs) or one per layer (default: w)")
    p.add_argument("--num-steps", type=int, default=1000, metavar="N",
                   help="optimization steps (default: 1000)")
    p.add_argument("--distance", choices=DISTANCES, default="lpips",
                   help="distance to the target (default: lpips)")
    p.add_argument("--lpips-weights", default=None, metavar="PATH",
                   help="local LPIPS weights file (offline use; also PIXELFOLD_LPIPS_WEIGHTS)")
    p.add_argument("--vgg16-weights", default=None, metavar="PATH",
                   help="local VGG16 weights file (offline use; also PIXELFOLD_VGG16_WEIGHTS)")
    p.add_argument("--seed", type=int, default=303,
                   help="seed of the noise images and of the noise added to w (default: 303)")
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate (default: 0.1)")
    p.add_argument("--w-avg-samples", type=int, default=10_000, metavar="N",
                   help="latents for the average and spread of w (default: 10000)")
    p.add_argument("--fixed-noise", action="store_true",
                   help="keep the model's stored noise images instead of optimizing them")
    p.add_argument("--save-video", nargs="?", const="mp4", default=None, choices=["mp4", "gif"],
                   help="also write the optimization as a video (default format: mp4)")
    p.add_argument("--video-every", type=int, default=10, metavar="N",
                   help="one video frame every N steps (default: 10)")
    p.add_argument("--tune-steps", type=int, default=0, metavar="N",
                   help="pivotal tuning steps after the search (default: 0, none)")
    p.add_argument("--tune-lr", type=float, default=3e-4,
                   help="learning rate of the pivotal tuning (default: 3e-4)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N",
                   help="targets optimized together (default: 8)")
    p.add_argument("--device", default=None,
                   help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(func=_cmd_project)


def _finite_positive(value: float, flag: str) -> float:
    import math

    if not (math.isfinite(value) and value > 0):
        raise CLIError(f"{flag} must be a finite number > 0, got {value:g}")
    return value


def _lpips_files(args: argparse.Namespace) -> tuple[Path, Path]:
    """The LPIPS and VGG16 weights files, found (or downloaded) before any other work."""
    from .metrics import MissingWeightsError
    from .metrics.weights import LPIPS_WEIGHTS, VGG16_WEIGHTS, resolve_weights

    try:
        return (resolve_weights(LPIPS_WEIGHTS, args.lpips_weights, progress=_progress()),
                resolve_weights(VGG16_WEIGHTS, args.vgg16_weights, progress=_progress()))
    except (MissingWeightsError, OSError) as exc:
        raise CLIError(str(exc)) from None


def _cmd_project(args: argparse.Namespace) -> int:
    import importlib.util

    _positive(args.num_steps, "--num-steps")
    _positive(args.batch_size, "--batch-size")
    _positive(args.w_avg_samples, "--w-avg-samples")
    _positive(args.video_every, "--video-every")
    _finite_positive(args.lr, "--lr")
    _finite_positive(args.tune_lr, "--tune-lr")
    if args.tune_steps < 0:
        raise CLIError(f"--tune-steps must be >= 0, got {args.tune_steps}")
    if args.save_video == "mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise CLIError("--save-video mp4 needs the optional imageio-ffmpeg package "
                       "(pip install imageio-ffmpeg); --save-video gif works without it")
    out = _output_dir(args.out)
    tuned_dir = _output_folder_swap(str(out / "generator_tuned"), "--out") \
        if args.tune_steps else None

    from .tools import find_targets, load_targets, target_names

    try:
        files = find_targets(args.target)
    except (OSError, ValueError) as exc:
        raise CLIError(f"--target {exc}") from None
    weights = _lpips_files(args) if args.distance == "lpips" else None
    G = _load(args)
    h, w = G.resolution
    try:
        targets, sizes = load_targets(files, (h, w), G.image_channels)
    except (OSError, ValueError) as exc:
        raise CLIError(f"--target {exc}") from None
    for file, (fw, fh) in zip(files, sizes, strict=True):
        if (fh, fw) != (h, w):
            print(f"pixelfold project: note: {file} is {fw}x{fh}: center-cropped to the "
                  f"model's aspect ratio and resized to {w}x{h} (Lanczos), as NVlabs' "
                  f"projector does", file=sys.stderr)
    lpips = None
    if weights is not None:
        from .metrics.ppl import lpips_vgg16

        lpips = lpips_vgg16(lpips_weights=weights[0], vgg16_weights=weights[1], resize=None,
                            uint8=False, progress=_progress()).to(G.device)
    names = target_names(files)
    _project_and_write(args, G, targets, files, names, lpips, out, tuned_dir)
    return 0


def _project_and_write(args: argparse.Namespace, G: Generator, targets: Any,
                       files: list[Path], names: list[str], lpips: Any, out: Path,
                       tuned_dir: Path | None) -> None:
    import torch

    from .tools import (
        image_distance,
        image_grid,
        project,
        save_gif,
        save_image,
        save_mp4,
        save_projected_w,
    )
    from .tools import tune_generator as tune

    results = []
    for start in range(0, len(files), args.batch_size):
        batch = targets[start:start + args.batch_size]
        results.append(project(
            G, batch, space=args.space, num_steps=args.num_steps, distance=args.distance,
            lpips=lpips, w_avg_samples=args.w_avg_samples, initial_learning_rate=args.lr,
            optimize_noise=not args.fixed_noise, seed=args.seed + start,
            history_every=args.video_every if args.save_video else 0, progress=_progress()))
    ws = torch.cat([r.ws for r in results])
    images = torch.cat([r.images for r in results])
    distance = torch.cat([r.distance for r in results])
    tuned_images = tuned_distance = None
    if tuned_dir is not None:
        tuned_G = tune(G, ws, targets, num_steps=args.tune_steps, learning_rate=args.tune_lr,
                       distance=args.distance, lpips=lpips, progress=_progress())
        with torch.no_grad():
            raw = tuned_G.synthesis(ws.to(G.device, next(G.parameters()).dtype),
                                    noise_mode="const").float()
            tuned_images = raw.clamp(-1, 1).cpu()
            tuned_distance = image_distance(raw, targets.to(raw.device),
                                            distance=args.distance, lpips=lpips).cpu()
    meta = dict(model=str(args.model), space=args.space, num_steps=args.num_steps,
                distance=args.distance, seed=args.seed, w_avg_samples=args.w_avg_samples,
                learning_rate=args.lr, optimize_noise=not args.fixed_noise,
                resolution=list(G.resolution), rendered_with="noise_mode=const")
    if tuned_dir is not None:
        meta.update(tune_steps=args.tune_steps, tune_learning_rate=args.tune_lr,
                    tuned_model="generator_tuned",
                    distance_tuned=[float(d) for d in tuned_distance])  # type: ignore[union-attr]
    npz = out / "projected_w.npz"
    with _writing(out):
        for i, name in enumerate(names):
            row = [targets[i], images[i]] + ([tuned_images[i]] if tuned_images is not None
                                             else [])
            save_image(targets[i], out / f"{name}.target.png")
            save_image(images[i], out / f"{name}.proj.png")
            save_image(image_grid(torch.stack(row), len(row)), out / f"{name}.compare.png")
            if tuned_images is not None:
                save_image(tuned_images[i], out / f"{name}.tuned.png")
        if args.save_video:
            _write_videos(args, G, results, names, out, save_gif, save_mp4)
        if tuned_dir is not None:
            tuned_G.save_pretrained(tuned_dir)
        save_projected_w(npz, ws, names=names, targets=[str(f) for f in files],
                         distance=distance, meta=meta)
    for i, name in enumerate(names):
        extra = f", tuned {float(tuned_distance[i]):.4f}" if tuned_distance is not None else ""
        print(f"{name}: {args.distance} distance {float(distance[i]):.4f}{extra}")
    print(f"projected {len(names)} image(s) into {args.space} ({args.num_steps} steps) and "
          f"wrote {npz}" + (f" and {tuned_dir}" if tuned_dir is not None else ""))


def _write_videos(args: argparse.Namespace, G: Generator, results: list[Any],
                  names: list[str], out: Path, save_gif: Any, save_mp4: Any) -> None:
    """One video per target: target | projection after every --video-every steps."""
    import torch

    dtype = next(G.parameters()).dtype
    k = 0
    for r in results:
        assert r.history is not None
        frames = []
        with torch.no_grad():
            for ws in r.history:  # (N, num_ws, w_dim) at one step
                frames.append(G.synthesis(ws.to(G.device, dtype), noise_mode="const")
                              .float().clamp(-1, 1).cpu())
        for i in range(r.ws.shape[0]):
            strip = torch.cat([torch.cat([r.targets[i], f[i]], dim=2)[None] for f in frames])
            path = out / f"{names[k]}.proj.{args.save_video}"
            if args.save_video == "gif":
                save_gif(strip, path, fps=10)
            else:
                save_mp4(strip, path, fps=10)
            k += 1


# ---------------------------------------------------------------------------------------------
# edit

EDIT_DESCRIPTION = """\
Edit images along closed-form directions of the style affine weights (SeFa, Shen & Zhou
2021): the weights of the affine layers reading the ws indices of --layers are stacked, every
output unit's weight vector scaled to unit norm, and the eigenvectors of A^T A, by
decreasing eigenvalue, are the directions (--direction K: the K-th, 0 the strongest).

--layers all (every ws index) or stage:K (the indices stage K's convolutions read; the last
stage also gets the final ToRGB's). The edit adds strength * direction (a unit vector) to
those rows of ws, for each strength of --strength: A:B:N (N values from A to B, ends
included, as numpy.linspace) or a list such as -2,0,2.

OUT is a .png grid: one row per seed (or per image of an .npz of ws), one column per
strength, labeled (--no-labels leaves the text out).

""" + LATENTS_NOTE


@command("edit")
def _build_edit(sub: Any) -> None:
    p = sub.add_parser("edit", help="edit grids along SeFa directions",
                       description=EDIT_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model(p)
    p.add_argument("--seeds", required=True, help=LATENTS_HELP)
    p.add_argument("--direction", type=int, default=0, metavar="K",
                   help="which direction, 0 the strongest (default: 0)")
    p.add_argument("--strength", default="-3:3:7", metavar="A:B:N",
                   help="strengths: A:B:N or a comma list (default: -3:3:7)")
    p.add_argument("--layers", default="all", metavar="all|stage:K",
                   help="the ws indices the directions are found for and moved (default: all)")
    _add_figure(p)
    _add_sampling(p)
    p.set_defaults(func=_cmd_edit)


def _cmd_edit(args: argparse.Namespace) -> int:
    import re

    from .tools import parse_strengths

    seeds = _seeds(args.seeds, "--seeds")
    with _flag("--strength"):
        strengths = parse_strengths(args.strength)
    if args.direction < 0:
        raise CLIError(f"--direction must be >= 0, got {args.direction}")
    if not re.fullmatch(r"all|stage:\d+", args.layers.strip()):
        raise CLIError(f"--layers {args.layers!r}: expected 'all' or 'stage:K'")
    out = _output_file(args.out, [".png"])
    G = _load(args)
    _fitting(G, seeds, "--seeds")

    from .tools import edit_figure, edit_images, resolve_layers, sefa_directions

    with _flag("--layers"):
        layers = resolve_layers(G, args.layers)
    directions, values = sefa_directions(G, layers)
    if args.direction >= directions.shape[0]:
        raise CLIError(f"--direction {args.direction} is out of range: --layers {args.layers} "
                       f"has {directions.shape[0]} directions (0-{directions.shape[0] - 1})")
    images = edit_images(G, seeds, directions[args.direction], strengths, layers=layers,
                         **_sampling_kwargs(args))
    span = f"ws {layers[0]}-{layers[-1]}" if len(layers) > 1 else f"ws {layers[0]}"
    title = (f"direction {args.direction} (eigenvalue {float(values[args.direction]):.3g}), "
             f"{span}")
    figure = edit_figure(images, strengths, seeds=seeds, title=title,
                         labels=not args.no_labels)
    _save_figure(figure, out, f"wrote {len(seeds)} latents x {len(strengths)} strengths along "
                              f"direction {args.direction} ({span}) to {out}")
    return 0


# ---------------------------------------------------------------------------------------------
# profile

PROFILE_DESCRIPTION = """\
Parameters (mapping / synthesis / total), GMACs per image (batch 1, counted on the meta
device: instant), images per second (median of --iters timed forward passes G(z) under
torch.inference_mode after --warmup untimed ones, synchronized on CUDA) and peak memory:

  CUDA  torch.cuda.max_memory_allocated over the passes (weights + activations)
  CPU   increase of the process's peak resident set size (VmHWM, reset before the passes)
        over the resident set with the model loaded: activations and allocator buffers,
        not the weights; on systems without /proc, the ru_maxrss increase (a lower bound)

CPU timings suffer much from other busy processes (the threads wait for each other);
--threads 1 is the most robust to them.

--convention paper adds, next to pixelfold's counts, the PixelFolder paper's: parameters
including the merge convolution the authors' code builds for the first stage and never uses,
and GMACs with each upsampling ModConv's transposed convolution counted per output position
and its blur not counted (pixelfold counts what is computed: per input position, blur
included). The two agree for models without them.

--json prints the same as a JSON object (keys: model, device, dtype, batch_size, params,
params_mapping, params_synthesis, gmacs, images_per_s, seconds_per_batch, warmup, iters,
threads, peak_memory_mb, memory_measure; with --convention paper also convention,
params_paper, gmacs_paper)."""


@command("profile")
def _build_profile(sub: Any) -> None:
    p = sub.add_parser("profile", help="parameters, GMACs, images/s and peak memory",
                       description=PROFILE_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model(p)
    p.add_argument("--batch-size", type=int, default=1, metavar="N",
                   help="images per timed pass (default: 1)")
    p.add_argument("--device", default=None,
                   help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="weights and latents dtype (default: float32)")
    p.add_argument("--warmup", type=int, default=2, help="untimed passes first (default: 2)")
    p.add_argument("--iters", type=int, default=5, help="timed passes (default: 5)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads while timing (default: torch's default)")
    p.add_argument("--convention", choices=CONVENTIONS, default="pixelfold",
                   help="also report parameters and GMACs as the PixelFolder paper counts "
                        "them (paper); default: pixelfold's counts only")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_profile)


def _cmd_profile(args: argparse.Namespace) -> int:
    import json

    from .tools import format_profile, profile_generator

    _positive(args.batch_size, "--batch-size")
    _positive(args.iters, "--iters")
    if args.threads is not None:
        _positive(args.threads, "--threads")
    if args.warmup < 0:
        raise CLIError(f"--warmup must be >= 0, got {args.warmup}")
    result = profile_generator(args.model, batch_size=args.batch_size, device=_device(args),
                               dtype=args.dtype, warmup=args.warmup, iters=args.iters,
                               threads=args.threads, convention=args.convention)
    print(json.dumps(result, indent=2) if args.json else format_profile(result))
    return 0


# ---------------------------------------------------------------------------------------------
# eval

EVAL_DESCRIPTION = """\
Evaluate generated images against real images: FID, KID and precision/recall by default
(--metrics), plus IS, PPL and FD-DINOv2 on request.

MODEL is the generated side: a model (a preset, a save_pretrained folder, a Hub id), a folder
of generated images (any folder without config.json; also a save_to_disk folder), or an .npz
of their precomputed statistics (FID/FD only). REAL is a Hub dataset id, a local image folder,
a folder written by save_to_disk, 'digits', or an .npz of precomputed statistics (FID/IS/FD
only). Images read from files are resized to the model's resolution (for a folder of
generated images: their own side, or --resolution) with --resize-filter.

KID uses 100 subsets of min(1000, generated, real) images. With 1,000 images or fewer on
each side, the same number, every subset would be all of them: KID is then computed once and
reported without a spread (--kid-subset-size N//2 gives a spread over smaller subsets).

Runs of 20 batches or more time two batches first and print one warning when the whole run
would take more than 10 minutes (50,000 + 50,000 images take hours on a CPU).

A class-conditional MODEL is evaluated over all classes, drawn uniformly. --per-class (FID
and KID only) evaluates it per class instead, the intra-class FID: the --num-gen images of
class K against the real images labelled K (REAL with labels: an image folder with one
subfolder per class, a dataset with a ClassLabel or integer column, --class-column NAME, or
'digits'), for every class, with their mean, and over all classes with the classes drawn
from REAL's label distribution.

--compare A.json B.json prints two reports written by --json-out side by side with their
differences, and refuses when their protocols differ (image counts, real images, feature
networks and weights, KID subsets, truncation, noise, versions, ...), naming every field;
--allow-different FIELD,... accepts named differences. What was evaluated (the generator or
images), the device, durations and file paths (their SHA-256 are compared) may differ.

Feature extractors are downloaded on first use when online; offline, pass the weights files
(--inception-weights, --vgg16-weights, --lpips-weights, --dinov2-weights) or set
PIXELFOLD_INCEPTION_WEIGHTS, PIXELFOLD_VGG16_WEIGHTS, PIXELFOLD_LPIPS_WEIGHTS,
PIXELFOLD_DINOV2_WEIGHTS. The report lists the protocol with every number: image counts, resize
filters, uint8 quantization by rounding, the networks' input resize (299x299 bilinear for
Inception), feature extractors and weights files, PPL space, torch/torch-fidelity/pixelfold
versions."""

EVAL_METRICS = TRAIN_METRICS
"""The metrics of ``pixelfold eval`` (those the trainer computes too)."""

EVAL_MODEL_HELP = ("the generated side: a preset, a save_pretrained folder or a Hub id; a "
                   "folder of generated images; or an .npz of their statistics")


@command("eval")
def _build_eval(sub: Any) -> None:
    p = sub.add_parser("eval", help="FID, KID, precision/recall, IS, PPL, FD-DINOv2; --compare",
                       description=EVAL_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", nargs="?", default=None, help=EVAL_MODEL_HELP)
    p.add_argument("--real", default=None, metavar="REAL",
                   help="real images or statistics (required unless only ppl is asked)")
    p.add_argument("--metrics", default="fid,kid,pr",
                   help=f"comma-separated, from {', '.join(EVAL_METRICS)} (default: fid,kid,pr)")
    p.add_argument("--num-gen", type=int, default=50_000,
                   help="generated images (at most, from a folder; default 50000)")
    p.add_argument("--num-real", type=int, default=50_000,
                   help="real images at most (default 50000)")
    p.add_argument("--ppl-samples", type=int, default=50_000, help="PPL pairs (default 50000)")
    p.add_argument("--ppl-space", choices=["z", "w"], default="z", help="PPL space (default z)")
    p.add_argument("--resize-filter", default="box",
                   choices=tuple(RESIZE_FILTERS),
                   help="filter resizing images read from files to the common resolution "
                        "(default: box)")
    p.add_argument("--resolution", type=int, default=None, metavar="N",
                   help="common side when MODEL is images or statistics (default: the "
                        "generated images' own)")
    p.add_argument("--kid-subset-size", type=int, default=None, metavar="N",
                   help="images per KID subset (default: min(1000, generated, real))")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the generated images and of the subsets (default: 0)")
    for name in ("inception", "vgg16", "lpips", "dinov2"):
        p.add_argument(f"--{name}-weights", default=None, metavar="PATH",
                       help=f"local {name} weights file (offline use)")
    p.add_argument("--per-class", action="store_true",
                   help="a class-conditional MODEL: FID/KID per class (intra-class FID), their "
                        "mean, and over all classes")
    p.add_argument("--class-column", default=None, metavar="NAME",
                   help="with --per-class: REAL's label column (default: found)")
    p.add_argument("--json-out", default=None, metavar="PATH", help="also write the report as JSON")
    p.add_argument("--compare", nargs=2, default=None, metavar=("A.json", "B.json"),
                   help="compare two reports written by --json-out (no MODEL then)")
    p.add_argument("--allow-different", default="", metavar="FIELD,...",
                   help="with --compare: protocol fields allowed to differ")
    p.add_argument("--truncation", "--trunc", dest="truncation", type=float, default=1.0,
                   metavar="PSI",
                   help=f"truncation psi of a model in [{PSI_RANGE[0]:g}, {PSI_RANGE[1]:g}] "
                        "(default: 1, none: the paper's protocol)")
    p.add_argument("--noise-mode", choices=NOISE_MODES, default="random",
                   help="per-pixel noise of a model for fid/kid/pr/is/fd-dinov2: random "
                        "(fresh each image, the paper's protocol), const (the stored noise "
                        "images) or none (default: random; ppl always uses const, as "
                        "StyleGAN2)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N",
                   help="images per batch (default: 64)")
    p.add_argument("--device", default=None,
                   help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available, "
                        "else cpu)")
    p.set_defaults(func=_cmd_eval)


def _eval_compare(args: argparse.Namespace) -> int:
    from .metrics import MetricsReport

    if args.model is not None:
        raise CLIError(f"--compare takes two reports, not MODEL ({args.model!r})")
    a_path, b_path = args.compare
    a, b = MetricsReport.load(a_path), MetricsReport.load(b_path)
    allow = {f.strip() for f in args.allow_different.split(",") if f.strip()}
    try:
        table = a.compare(b, allow=allow)
    except ValueError as exc:
        raise CLIError(f"{a_path} and {b_path}: {exc} (--allow-different FIELD,... to "
                       f"compare anyway)") from None
    print(f"A: {a_path}\nB: {b_path}\n")
    print(table)
    return 0


def _eval_generated(args: argparse.Namespace) -> tuple[Any, Any]:
    """The generated side (a loaded model, or the path of images or statistics) and the
    device."""
    from .metrics import is_model_folder, is_statistics

    _check_psi(args.truncation)
    _positive(args.batch_size, "--batch-size")
    path = Path(args.model)
    if is_statistics(args.model) or (path.is_dir() and not is_model_folder(path)):
        return args.model, _device(args)
    G = _load(args)
    return G, next(G.parameters()).device


def _cmd_eval(args: argparse.Namespace) -> int:
    from . import metrics

    if args.compare is not None:
        return _eval_compare(args)
    if args.allow_different:
        raise CLIError("--allow-different goes with --compare")
    if args.model is None:
        raise CLIError("MODEL is required (a model, a folder of generated images or an .npz "
                       "of their statistics), or --compare A.json B.json")
    wanted = [m.strip() for m in args.metrics.split(",") if m.strip()]
    bad = [m for m in wanted if m not in EVAL_METRICS]
    if bad or not wanted:
        raise CLIError(f"--metrics {args.metrics!r}: choose from {', '.join(EVAL_METRICS)}")
    for flag in ("num_gen", "num_real", "ppl_samples"):
        _positive(getattr(args, flag), "--" + flag.replace("_", "-"))
    for flag in ("resolution", "kid_subset_size"):
        if getattr(args, flag) is not None:
            _positive(getattr(args, flag), "--" + flag.replace("_", "-"))
    needs_real = any(m != "ppl" for m in wanted)
    if needs_real and args.real is None:
        raise CLIError("--real is required for " + ", ".join(m for m in wanted if m != "ppl"))
    json_out = _output_file(args.json_out, (".json",), "--json-out") if args.json_out else None
    if args.class_column is not None and not args.per_class:
        raise CLIError("--class-column goes with --per-class")
    if args.per_class:
        return _eval_per_class(args, wanted, json_out)
    generated, device = _eval_generated(args)
    if "ppl" in wanted and isinstance(generated, str):
        raise CLIError(f"ppl walks a generator's latent space: MODEL {args.model} is "
                       f"{'statistics' if generated.endswith('.npz') else 'a folder of images'}"
                       f", not a model")
    common = dict(batch_size=args.batch_size, device=device, seed=args.seed,
                  truncation_psi=args.truncation, progress=_progress())
    report = None
    try:
        if any(m in wanted for m in ("fid", "kid", "pr", "is")):
            report = metrics.compute_metrics(
                generated, args.real, fid="fid" in wanted, kid="kid" in wanted,
                prc="pr" in wanted, isc="is" in wanted, num_gen=args.num_gen,
                num_real=args.num_real, inception_weights=args.inception_weights,
                vgg16_weights=args.vgg16_weights, noise_mode=args.noise_mode,
                resize_filter=args.resize_filter, resolution=args.resolution,
                kid_subset_size=args.kid_subset_size, **common)
        if "fd-dinov2" in wanted:
            part = metrics.compute_fd_dinov2(
                generated, args.real, num_gen=args.num_gen, num_real=args.num_real,
                dinov2_weights=args.dinov2_weights, noise_mode=args.noise_mode,
                resize_filter=args.resize_filter, resolution=args.resolution, **common)
            report = part if report is None else report.merge(part)
        if "ppl" in wanted:
            part = metrics.compute_ppl(generated, space=args.ppl_space,
                                       num_samples=args.ppl_samples,
                                       lpips_weights=args.lpips_weights,
                                       vgg16_weights=args.vgg16_weights, **common)
            report = part if report is None else report.merge(part)
    except metrics.MissingWeightsError as exc:
        raise CLIError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    assert report is not None
    print(report)
    if json_out is not None:
        import os

        with _writing(json_out):
            json_out.parent.mkdir(parents=True, exist_ok=True)
            tmp = json_out.with_name(f".{json_out.name}.tmp")
            tmp.write_text(report.to_json() + "\n")
            os.replace(tmp, json_out)
    return 0


def _eval_per_class(args: argparse.Namespace, wanted: list[str], json_out: Path | None) -> int:
    """``eval --per-class``: intra-class FID/KID of a conditional model."""
    from . import metrics

    bad = [m for m in wanted if m not in ("fid", "kid")]
    if bad:
        raise CLIError(f"--per-class computes fid and kid, not {', '.join(bad)}: pass "
                       f"--metrics fid or --metrics fid,kid")
    if metrics.is_statistics(args.real) or metrics.is_statistics(args.model):
        raise CLIError("--per-class needs labelled real images and a model, not statistics")
    path = Path(args.model)
    if path.is_dir() and not metrics.is_model_folder(path):
        raise CLIError(f"--per-class needs a model: {args.model} is a folder of images")
    _check_psi(args.truncation)
    _positive(args.batch_size, "--batch-size")
    G = _load(args)
    if not G.c_dim:
        raise CLIError(f"--per-class: {args.model} is unconditional (it has no classes)")
    try:
        result = metrics.compute_class_metrics(
            G, args.real, class_column=args.class_column, fid="fid" in wanted,
            kid="kid" in wanted, num_gen=args.num_gen, num_real=args.num_real,
            inception_weights=args.inception_weights, noise_mode=args.noise_mode,
            resize_filter=args.resize_filter, kid_subset_size=args.kid_subset_size,
            batch_size=args.batch_size, device=next(G.parameters()).device, seed=args.seed,
            truncation_psi=args.truncation, progress=_progress())
    except metrics.MissingWeightsError as exc:
        raise CLIError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    print(result)
    if json_out is not None:
        import json

        from .utils.files import atomic_write_text

        with _writing(json_out):
            atomic_write_text(json_out, json.dumps(result.to_dict(), indent=2, default=str)
                              + "\n")
    return 0


# ---------------------------------------------------------------------------------------------
# convert


@command("convert")
def _build_convert(sub: Any) -> None:
    p = sub.add_parser("convert", help="convert an authors' PixelFolder checkpoint",
                       description="Convert a checkpoint of the PixelFolder authors' code (.pt) "
                                   "into a pixelfold save_pretrained folder (config.json + "
                                   "model.safetensors), with the checkpoint's discriminator in "
                                   "its discriminator/ subfolder (when it holds one): a folder "
                                   "that a recipe's --init-from fine-tunes.")
    p.add_argument("input", help="the authors' .pt file")
    p.add_argument("output_dir", help="folder to write")
    p.add_argument("--preset", default=None,
                   choices=["pixelfolder-256", "pixelfolder-512", "pixelfolder-1024"],
                   help="model layout (default: inferred from the shapes)")
    p.add_argument("--which", default="g_ema", choices=["g_ema", "g"],
                   help="which generator of the checkpoint to convert (default: g_ema)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="also read checkpoints holding pickled objects (trusted files only)")
    p.add_argument("--w-avg-samples", type=int, default=10_000, metavar="N",
                   help="random z used to estimate the average w for truncation (>= 1; "
                        "default: 10000)")
    p.add_argument("--no-discriminator", dest="discriminator", action="store_false",
                   help="write only the generator, without converting the checkpoint's "
                        "discriminator")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT_DIR")
    p.set_defaults(func=_cmd_convert)


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import (
        has_official_discriminator,
        load_official,
        load_official_discriminator,
        read_official_checkpoint,
    )

    src = Path(args.input)
    if not src.is_file():
        raise CLIError(f"no checkpoint file at {src}" if not src.is_dir() else
                       f"{src} is a folder; expected the authors' .pt checkpoint file")
    _positive(args.w_avg_samples, "--w-avg-samples")
    # everything about the output is checked before the (long) conversion
    out = _output_folder_swap(args.output_dir, "OUTPUT_DIR")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise CLIError(f"{out} exists and is not empty (pass --overwrite to replace it)")
    ckpt = read_official_checkpoint(src, allow_pickle=args.allow_pickle)
    G = load_official(ckpt, preset=args.preset, which=args.which,
                      w_avg_samples=args.w_avg_samples, source=str(src))
    D = None  # both converted before anything is written
    if args.discriminator and has_official_discriminator(ckpt):
        D = load_official_discriminator(ckpt, resolution=G.resolution[0], source=str(src))
    with _writing(out):
        G.save_pretrained(out)
        if D is not None:
            D.save_pretrained(out / "discriminator")
    from .metrics import count_params

    line = f"wrote {G.spec.name} ({count_params(G):,d} parameters) to {out}"
    if D is not None:
        line += (f", its discriminator ({count_params(D):,d} parameters) to "
                 f"{out / 'discriminator'}")
    elif args.discriminator:
        line += f" ({src} holds no discriminator)"
    print(line)
    return 0


# ---------------------------------------------------------------------------------------------
# plot-metrics

PLOT_METRICS_DESCRIPTION = """\
Draw the metrics a training run computed (--metrics during training: metrics.jsonl in its
folder) against kimg, one panel per metric, and ADA's p and r_t for ADA runs; the best value of
the run's best metric is marked. Writes RUN_DIR/metrics.png unless --out is given. Needs
matplotlib (the docs extra)."""


@command("plot-metrics")
def _build_plot_metrics(sub: Any) -> None:
    p = sub.add_parser("plot-metrics", help="a training run's metrics against kimg (PNG)",
                       description=PLOT_METRICS_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run's output folder (or metrics.jsonl)")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="the .png to write (default: RUN_DIR/metrics.png)")
    p.add_argument("--metrics", default=None, metavar="LIST",
                   help="values to draw, comma-separated (default: every metric of the log)")
    p.set_defaults(func=_cmd_plot_metrics)


def _cmd_plot_metrics(args: argparse.Namespace) -> int:
    from .tools.plots import plot_metrics

    out = _output_file(args.out, [".png"]) if args.out is not None else None
    names = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    try:
        path = plot_metrics(args.run_dir, out, metrics=names)
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------------------------
# demo

DEMO_DESCRIPTION = """\
Serve an interactive page for MODEL (Gradio: pip install "pixelfold[demo]"), at
http://HOST:PORT until Ctrl-C: seed and truncation sliders and the noise mode; per-stage
style mixing with a second seed; an interpolation strip from the first seed to the second (z
or w); and the SeFa edit directions with a strength slider when pixelfold.tools.edit is
installed. Every control re-renders the images it affects (tens of milliseconds for the tiny
presets on a CPU).

--host 127.0.0.1 (the default) serves this machine only; 0.0.0.0 every interface. --share
yes also opens a public gradio.live link (needs internet)."""


@command("demo")
def _build_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="an interactive page: seeds, truncation, mixing, "
                                    "interpolation, edits (Gradio)",
                       description=DEMO_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model(p)
    p.add_argument("--port", type=int, default=7860,
                   help="port of the page (0: a free one; default: 7860)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--share", choices=["no", "yes"], default="no",
                   help="also a public gradio.live link (default: no)")
    p.add_argument("--device", default=None,
                   help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .tools.demo import DEMO_INSTALL, gradio_available, launch_demo

    if not gradio_available():  # first: says how to install it
        raise CLIError(f"the demo needs gradio, which is not installed: {DEMO_INSTALL}")
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port {args.port}: expected 0 (a free port) to 65535")
    if not args.host.strip():
        raise CLIError("--host is empty: give an address such as 127.0.0.1 or 0.0.0.0")
    G = _load(args)  # bad models fail here, before gradio is imported (seconds)
    device = next(G.parameters()).device
    demo = launch_demo(G, host=args.host, port=args.port, share=args.share == "yes",
                       block=False, name=args.model)
    share = f" and {demo.share_url}" if getattr(demo, "share_url", None) else ""
    print(f"serving the demo of {args.model} on {demo.local_url}{share} ({device}); Ctrl-C "
          f"stops it", flush=True)
    try:
        demo.block_thread()
    finally:
        demo.close()
    return 0


# ---------------------------------------------------------------------------------------------
# entry point

EPILOG = """\
MODEL is a preset name (randomly initialized weights, for trying things out) or a folder
written by save_pretrained. Run 'pixelfold COMMAND --help' for the options of a command.
Bad input exits with status 2 and one line on stderr; a bug in pixelfold with status 1 and
its traceback (--debug or PIXELFOLD_DEBUG=1: a traceback for every error)."""

DEBUG_HELP = "show the traceback of every error (also PIXELFOLD_DEBUG=1)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pixelfold`` command, with every registered subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="pixelfold",
        description="pixelfold: progressive pixel-regression generators (PixelFolder, CIPS).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument("--version", action="version", version=f"pixelfold {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for build in COMMANDS.values():
        build(sub)
    for name, p in sub.choices.items():  # --debug after the command too
        if name in COMMANDS:
            p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                           help=DEBUG_HELP)
    return parser


NEGATIVE_VALUE_FLAGS = ("--strength",)
"""Flags whose value may start with a minus sign that is not a plain number (``-3:3:7``):
argparse (before Python 3.13) would take it for a flag, so it is attached to the flag."""


def _attach_negative_values(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in NEGATIVE_VALUE_FLAGS and i + 1 < len(argv) \
                and argv[i + 1][:2] != "--" and argv[i + 1][:1] == "-":
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status: 0 success, 2 bad input (one line
    ``pixelfold COMMAND: error: ...`` on stderr), 1 a bug (with its traceback), 130
    interrupted."""
    parser = build_parser()
    argv = _attach_negative_values(sys.argv[1:] if argv is None else list(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse's own usage errors
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_main(lambda: args.func(args), prog=f"pixelfold {args.command}",
                    debug=args.debug or debug_enabled())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
