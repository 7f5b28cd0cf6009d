"""Lay images out as figures and write them atomically: grids, labeled grids, strips, GIFs.

Images come in as tensors in ``[-1, 1]`` (``(N, C, H, W)``, ``C`` = 1, 3 or 4); figures are
``PIL.Image``\\ s. Plain images and grids keep their channels (PNG modes ``L``, ``RGB``,
``RGBA``); labeled figures, GIFs and MP4s are RGB, made with
[`to_rgb`][pixelfold.utils.channels.to_rgb] (grayscale repeated, RGBA over white).
A tensor holding NaN or infinity is refused (``NonFiniteError``): it would become black
pixels. Every writer creates the parent folders and writes a temporary file next to the
target, then renames it (``os.replace``) after flushing it to the disk, so a reader never sees
half a file and a failed write (a full disk: ``DiskFullError``) leaves the old file as it
was. New files get the permissions of the user's umask (``0o644`` with the
usual ``022``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..utils.channels import IMAGE_MODES, to_rgb
from ..utils.errors import NonFiniteError
from ..utils.files import default_mode, disk_errors
from .images import Crossover

__all__ = [
    "image_grid",
    "mix_figure",
    "save_gif",
    "save_image",
    "save_mp4",
    "stages_figure",
    "to_pil",
]

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(..., C, H, W)`` in ``[-1, 1]`` -> ``(..., H, W, C)`` uint8; NaN or infinity is an
    error (clamping would turn it into black or white pixels)."""
    x = images.detach().float().cpu()
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise NonFiniteError(f"the images hold {bad:,d} NaN or infinite values of "
                             f"{x.numel():,d}; nothing was written from them")
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).numpy()


def _pil(array: np.ndarray) -> Image.Image:
    """An ``(H, W, C)`` uint8 array as a PIL image of mode ``L``, ``RGB`` or ``RGBA``."""
    mode = IMAGE_MODES[array.shape[-1]]
    return Image.fromarray(array[..., 0] if mode == "L" else array, mode)


def _rgb_uint8(images: torch.Tensor) -> np.ndarray:
    """``(..., C, H, W)`` in ``[-1, 1]`` -> ``(..., H, W, 3)`` uint8 RGB (see ``to_rgb``)."""
    return _to_uint8(to_rgb(images.detach().float()))


def to_pil(image: torch.Tensor) -> Image.Image:
    """One image ``(C, H, W)`` in ``[-1, 1]`` as a PIL image: ``L`` for 1 channel, ``RGB``
    for 3, ``RGBA`` for 4."""
    if image.ndim != 3 or image.shape[0] not in IMAGE_MODES:
        raise ValueError(f"to_pil expects one (C, H, W) image with C = 1, 3 or 4, got "
                         f"{tuple(image.shape)}")
    return _pil(_to_uint8(image))


def image_grid(images: torch.Tensor, ncols: int | None = None) -> Image.Image:
    """Images ``(N, C, H, W)`` in ``[-1, 1]`` as one grid, row by row, without gaps, in the
    images' mode (``L``, ``RGB`` or ``RGBA``; empty cells are black, or transparent for RGBA).

    Args:
        images: the images.
        ncols: images per row (default ``ceil(sqrt(N))``; ``N`` gives a one-row strip).
    """
    if images.ndim != 4 or images.shape[1] not in IMAGE_MODES or images.shape[0] == 0:
        raise ValueError(f"image_grid expects (N, C, H, W) images with C = 1, 3 or 4, got "
                         f"{tuple(images.shape)}")
    n, c, h, w = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    canvas = np.full((nrows * h, ncols * w, c), 0, dtype=np.uint8)
    for i, img in enumerate(_to_uint8(images)):
        r, col = divmod(i, ncols)
        canvas[r * h:(r + 1) * h, col * w:(col + 1) * w] = img
    return _pil(canvas)


def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _text_size(font: Font, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(right - left), int(bottom - top)


def _wrap(text: str, font: Font, max_width: int) -> list[str]:
    """Greedy word wrap of ``text`` into lines at most ``max_width`` wide (a single word
    wider than that keeps a line of its own)."""
    words = text.split()
    lines = words[:1]
    for word in words[1:]:
        if _text_size(font, f"{lines[-1]} {word}")[0] <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def _fit_labels(texts: Sequence[str], max_width: int, size: int,
                min_size: int = 7) -> tuple[Font, list[list[str]]]:
    """A font and the lines of every text such that every line is at most ``max_width`` wide:
    one line each at the largest size down to 3/4 of ``size``, else word-wrapped into as few
    lines as possible (2, then 3, then any) at the largest size that fits, else the smallest
    size."""
    one_line_min = max(min_size, (3 * size) // 4)
    for s in range(size, one_line_min - 1, -1):
        font = _font(s)
        if all(_text_size(font, t)[0] <= max_width for t in texts):
            return font, [[t] for t in texts]
    for max_lines in (2, 3, None):
        for s in range(size, min_size - 1, -1):
            font = _font(s)
            wrapped = [_wrap(t, font, max_width) for t in texts]
            if all(_text_size(font, line)[0] <= max_width
                   and (max_lines is None or len(lines) <= max_lines)
                   for lines in wrapped for line in lines):
                return font, wrapped
    return font, wrapped


def _labeled_canvas(
    cells: dict[tuple[int, int], np.ndarray],
    shape: tuple[int, int],
    cell_size: tuple[int, int],
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    headers: Sequence[tuple[int, int, str]] = (),
    col_gaps: Sequence[int] = (),
    row_gaps: Sequence[int] = (),
) -> Image.Image:
    """Place ``cells[(row, col)]`` (``H x W x 3`` uint8) on a white canvas of ``shape`` cells.

    ``col_gaps`` / ``row_gaps``: indices of columns / rows preceded by a white gap.
    ``row_labels`` go in a band on the left, ``col_labels`` in a band on top, ``headers``
    ``(first_col, last_col, text)`` in a band above that, centered over their columns. Labels
    shrink, then wrap, to fit the width of their columns.
    """
    nrows, ncols = shape
    h, w = cell_size
    gap = max(2, min(h, w) // 16)
    pad = max(2, h // 16)
    base = int(np.clip(h // 6, 9, 28))
    xs = np.cumsum([0] + [w + (gap if c + 1 in col_gaps else 0) for c in range(ncols)])
    ys = np.cumsum([0] + [h + (gap if r + 1 in row_gaps else 0) for r in range(nrows)])

    col_font, col_lines = _fit_labels(col_labels or [], w - 2, base)
    header_width = min((int(xs[b] - xs[a]) + w - 2 for a, b, _ in headers), default=w)
    header_font, header_lines = _fit_labels([t for _, _, t in headers], header_width, base)
    row_font = _font(base)

    def line_height(font: Font) -> int:
        return _text_size(font, "Ag0")[1] + 2

    def band(font: Font, lines: list[list[str]]) -> int:
        return max((len(ls) for ls in lines), default=0) * line_height(font) + 2 * pad

    header_band = band(header_font, header_lines) if headers else 0
    col_band = band(col_font, col_lines) if col_labels else 0
    row_band = (max(_text_size(row_font, t)[0] for t in row_labels) + 2 * pad
                if row_labels else 0)

    x0, y0 = row_band, header_band + col_band
    width, height = x0 + int(xs[-1]), y0 + int(ys[-1])
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    for (r, c), img in cells.items():
        canvas.paste(Image.fromarray(img, "RGB"), (x0 + int(xs[c]), y0 + int(ys[r])))

    draw = ImageDraw.Draw(canvas)

    def centered(lines: list[str], font: Font, cx: float, cy: float) -> None:
        step = line_height(font)
        top = cy - step * (len(lines) - 1) / 2
        for i, text in enumerate(lines):
            draw.text((cx, top + i * step), text, fill=TEXT, font=font, anchor="mm")

    for (a, b, _), lines in zip(headers, header_lines, strict=True):
        centered(lines, header_font, x0 + (xs[a] + xs[b] + w) / 2, header_band / 2)
    for c, lines in enumerate(col_lines):
        centered(lines, col_font, x0 + xs[c] + w / 2, header_band + col_band / 2)
    for r, text in enumerate(row_labels or []):
        centered([text], row_font, row_band / 2, y0 + ys[r] + h / 2)
    return canvas


def _seed_label(seed: int | str) -> str:
    """``seed N`` for a seed, the label itself for given latents (a projected image's name)."""
    return f"seed {seed}" if isinstance(seed, int) else str(seed)


def mix_figure(rows: torch.Tensor, cols: torch.Tensor, mixed: torch.Tensor,
               crossovers: Sequence[Crossover], *, row_seeds: Sequence[int] | None = None,
               col_seeds: Sequence[int] | None = None, labels: bool = True) -> Image.Image:
    """The style-mixing figure of
    [`style_mix_images`][pixelfold.tools.style_mix_images]' outputs.

    One block per crossover, side by side. In every block the first row holds the column
    source images and each following row the row source's mixes with them; the row source
    images make up the first column of the figure, left of all blocks (top-left corner empty)::

                     stage 0: ws 0-4         stage 1: ws 4-8
                     seed 10   seed 11       seed 10   seed 11
                     [col 10]  [col 11]      [col 10]  [col 11]
        seed 1  [row 1]  [mix]     [mix]         [mix]     [mix]
        seed 2  [row 2]  [mix]     [mix]         [mix]     [mix]

    A mix keeps the row latent's styles except the block's crossover indices, taken from the
    column latent. White gaps separate the sources from the mixes and the blocks from one
    another.

    Args:
        rows: row sources ``(R, 3, H, W)`` (1 or 4 channels: shown as RGB, see ``to_rgb``).
        cols: column sources ``(C, 3, H, W)``.
        mixed: ``(K, R, C, 3, H, W)``.
        crossovers: the ``K`` resolved crossovers (their labels head the blocks).
        row_seeds: seeds of the rows, for the labels.
        col_seeds: seeds of the columns, for the labels.
        labels: draw the text labels (``False``: images and gaps only).
    """
    K, R, C = mixed.shape[:3]
    if rows.shape[0] != R or cols.shape[0] != C or len(crossovers) != K:
        raise ValueError(f"mix_figure: {rows.shape[0]} rows, {cols.shape[0]} columns and "
                         f"{len(crossovers)} crossovers do not match mixed of shape "
                         f"{tuple(mixed.shape)}")
    h, w = rows.shape[-2:]
    rows_u8, cols_u8, mixed_u8 = _rgb_uint8(rows), _rgb_uint8(cols), _rgb_uint8(mixed)
    cells: dict[tuple[int, int], np.ndarray] = {}
    for r in range(R):
        cells[(r + 1, 0)] = rows_u8[r]
    for k in range(K):
        first = 1 + k * C
        for c in range(C):
            cells[(0, first + c)] = cols_u8[c]
            for r in range(R):
                cells[(r + 1, first + c)] = mixed_u8[k, r, c]
    col_gaps = [1 + k * C for k in range(K)]
    kwargs = {}
    if labels:
        row_seeds = row_seeds if row_seeds is not None else range(R)
        col_seeds = col_seeds if col_seeds is not None else range(C)
        kwargs = dict(
            row_labels=[""] + [_seed_label(s) for s in row_seeds],
            col_labels=[""] + [_seed_label(s) for s in col_seeds] * K,
            headers=[(1 + k * C, k * C + C, label) for k, (label, _) in enumerate(crossovers)],
        )
    return _labeled_canvas(cells, (R + 1, 1 + K * C), (h, w), col_gaps=col_gaps, row_gaps=[1],
                           **kwargs)


def stages_figure(stages: torch.Tensor, *, seeds: Sequence[int] | None = None,
                  stage_resolutions: Sequence[tuple[int, int]] | None = None,
                  labels: bool = True) -> Image.Image:
    """Each stage's output side by side (the paper's Fig. 6): rows are seeds, columns stages.

    Args:
        stages: ``(N, S, C, H, W)`` from [`stage_images`][pixelfold.tools.stage_images]
            (shown as RGB, see ``to_rgb``).
        seeds: seeds of the rows, for the labels.
        stage_resolutions: native resolution of each stage, for the column labels.
        labels: draw ``seed N`` on the left and ``stage K (RxR)`` on top.
    """
    N, S, _, h, w = stages.shape
    u8 = _rgb_uint8(stages)
    cells = {(n, s): u8[n, s] for n in range(N) for s in range(S)}
    kwargs = {}
    if labels:
        seeds = seeds if seeds is not None else range(N)
        names = [f"stage {s}" + (f" ({stage_resolutions[s][0]}x{stage_resolutions[s][1]})"
                                 if stage_resolutions else "") for s in range(S)]
        kwargs = dict(row_labels=[_seed_label(s) for s in seeds],
                      headers=[(s, s, name) for s, name in enumerate(names)])
    return _labeled_canvas(cells, (N, S), (h, w), **kwargs)


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def _atomic(path: str | os.PathLike, write) -> Path:
    """``write(tmp)`` to a temporary sibling of ``path``, then flush it to the disk, give it
    the umask's permissions and rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with disk_errors(path, cleanup=tmp):
            write(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, default_mode(False))
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_image(image: Image.Image | torch.Tensor, path: str | os.PathLike) -> Path:
    """Write a PIL image or a ``(C, H, W)`` tensor in ``[-1, 1]`` atomically (mode ``L``,
    ``RGB`` or ``RGBA``, see [`to_pil`][pixelfold.tools.to_pil]); the format follows the suffix
    (``.png``, ``.jpg``, ...; JPEG has no alpha: an RGBA image is composited over white)."""
    if isinstance(image, torch.Tensor):
        image = to_pil(image)
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format of {path} from its suffix")
    if fmt == "JPEG" and image.mode in ("RGBA", "LA"):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return _atomic(path, lambda tmp: image.save(tmp, format=fmt))


def _frames(frames: Sequence[Image.Image] | torch.Tensor) -> list[Image.Image]:
    if isinstance(frames, torch.Tensor):
        frames = [_pil(f) for f in _rgb_uint8(frames)]
    frames = list(frames)
    if not frames:
        raise ValueError("no frames to write")
    return frames


def save_gif(frames: Sequence[Image.Image] | torch.Tensor, path: str | os.PathLike, *,
             fps: float = 12.0, loop: bool = True) -> Path:
    """Write an animated GIF atomically (Pillow, 256 colors per frame).

    GIF stores frame times in hundredths of a second, so the rate is rounded to that.
    Pillow merges consecutive identical frames into one longer frame.

    Args:
        frames: PIL images or ``(F, C, H, W)`` in ``[-1, 1]`` (made RGB, see ``to_rgb``).
        path: the ``.gif`` to write.
        fps: frames per second.
        loop: loop forever (else play once).
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    frames = _frames(frames)
    duration = max(10, round(100 / fps) * 10)
    kwargs = {"loop": 0} if loop else {}

    def write(tmp: Path) -> None:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=duration, **kwargs)

    return _atomic(path, write)


def save_mp4(frames: Sequence[Image.Image] | torch.Tensor, path: str | os.PathLike, *,
             fps: float = 12.0) -> Path:
    """Write an H.264 MP4 atomically with ``imageio-ffmpeg`` (an optional package:
    ``pip install imageio-ffmpeg``; it is not a dependency of pixelfold).

    Raises:
        ImportError: ``imageio_ffmpeg`` is not installed.
    """
    import imageio_ffmpeg

    frames = _frames(frames)
    size = frames[0].size

    def write(tmp: Path) -> None:
        writer = imageio_ffmpeg.write_frames(str(tmp), size, fps=fps, codec="libx264",
                                             pix_fmt_out="yuv420p", macro_block_size=2)
        writer.send(None)
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(np.asarray(frame.convert("RGB"))))
        finally:
            writer.close()

    return _atomic(path, write)
