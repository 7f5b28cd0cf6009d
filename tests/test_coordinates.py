"""Coordinate windows: the training frame is bit-identical, shifts and zooms move every stage's
grid alike, the learned embedding is continued as documented, per-pixel models agree on the
overlap of shifted windows (PixelFolder's 3x3 convolutions do not), the style-free input cache
is keyed on the window, torch.compile, panoramas and the CLI."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from pixelfold.cli import main
from pixelfold.layers import CoordinateEmbedding, CoordinateWindow, FourierFeatures, coordinate_grid
from pixelfold.models import Generator
from pixelfold.tools import (
    aligned_shift,
    generate_images,
    panorama_images,
    panorama_windows,
    parse_shift,
    parse_zoom,
)
from pixelfold.utils.errors import ConfigError

TINY = ("pixelfolder-tiny-32", "pixelfolder-tiny-64", "cips-tiny-32")


def _model(name: str) -> Generator:
    torch.manual_seed(0)
    return Generator.from_preset(name).eval()


@pytest.mark.parametrize("name", TINY)
def test_training_frame_is_bit_identical(name):
    """No window, window=None and the identity window give the same bits, with and without
    the style-free cache (autograd on: no cache)."""
    G = _model(name)
    z = torch.randn(2, G.z_dim)
    ref = G(z, noise_mode="const")
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            assert torch.equal(G(z, noise_mode="const", window=None), ref)
            assert torch.equal(G(z, noise_mode="const", window=CoordinateWindow()), ref)
            ws = G.mapping(z)
            assert torch.equal(G.synthesis(ws, noise_mode="const",
                                           window=CoordinateWindow(padding="zeros")),
                               G.synthesis(ws, noise_mode="const"))


@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_window_grid_geometry(n):
    """The identity window is coordinate_grid; a shift of k/n frames moves the grid by k
    pixels; windows shifted by one frame continue each other with the grid's own spacing (no
    repeated column); a zoom scales the spacing about the center."""
    torch.testing.assert_close(CoordinateWindow().grid(n, n + 1), coordinate_grid(n, n + 1))
    step = 2.0 / max(n - 1, 1)
    base = CoordinateWindow().grid(n)
    one = CoordinateWindow(shift=(1 / n, -2 / n)).grid(n)
    torch.testing.assert_close(one[0, 0], base[0, 0] + step)  # x: one pixel right
    torch.testing.assert_close(one[0, 1], base[0, 1] - 2 * step)  # y: two pixels up
    row = torch.cat([CoordinateWindow(shift=(k, 0)).grid(n)[0, 0, 0] for k in (-1, 0, 1)])
    torch.testing.assert_close(row, -1 - n * step + step * torch.arange(3 * n).float())
    zoomed = CoordinateWindow(zoom=4.0).grid(n)[0, 0, 0]
    center = base[0, 0, 0].mean()  # 0, or -1 for a grid of one pixel
    torch.testing.assert_close(zoomed, center + (base[0, 0, 0] - center) / 4)


def test_fixed_fourier_features_repeat_and_continue():
    """Fixed octave features (periods 2 / 2**k in coordinates) are the same one grid spacing
    short of a frame further, (n - 1) / n frames (their period is 2: n - 1 pixels), and the
    frame to the right continues the training frame's features without a seam."""
    n = 16
    ff = FourierFeatures(24, learned=False)
    base = ff(CoordinateWindow().grid(n))
    # float32 coordinates near 3, times frequencies up to 32 pi: about 1e-5 of rounding
    torch.testing.assert_close(ff(CoordinateWindow(shift=((n - 1) / n, 0)).grid(n)), base,
                               atol=1e-4, rtol=0)
    stitched = torch.cat([base, ff(CoordinateWindow(shift=(1, 0)).grid(n))], dim=3)
    xs = -1 + 2 * torch.arange(2 * n, dtype=torch.float64) / (n - 1)
    line = torch.stack([xs[None].expand(n, 2 * n),
                        torch.linspace(-1, 1, n, dtype=torch.float64)[:, None].expand(n, 2 * n)])
    torch.testing.assert_close(stitched, ff(line[None].float()), atol=1e-4, rtol=0)


def test_coordinate_embedding_outside_and_between_its_grid():
    """A shift of one pixel gives the stored vectors exactly, the new column from the padding;
    half-pixel positions (zoom 2 about the center of an odd grid) are the mean of neighbors;
    gradients reach the parameter."""
    torch.manual_seed(0)
    emb = CoordinateEmbedding(3, 5, 7)
    w = emb.weight
    assert emb(2, CoordinateWindow()).data_ptr() == w.data_ptr()
    right = (1 / 7, 0)
    for padding, last in (("border", w[..., 6]), ("reflection", w[..., 5]),
                          ("zeros", torch.zeros_like(w[..., 6]))):
        got = emb(1, CoordinateWindow(shift=right, padding=padding))
        assert torch.equal(got[..., :6], w[..., 1:])
        assert torch.equal(got[..., 6], last)
    far = emb(1, CoordinateWindow(shift=(0, 3), padding="border"))  # three frames down
    assert torch.equal(far, w[:, :, 4:5].expand_as(far))
    mirrored = emb(1, CoordinateWindow(shift=(0, 4 / 5), padding="reflection"))  # 4 rows down
    assert torch.equal(mirrored, w.flip(2))  # rows 4..8 reflect to rows 4..0
    # zoom 2 about the center: x positions 1.5, 2, ..., 4.5 of 7 columns, y 1, 1.5, ..., 3
    half = emb(1, CoordinateWindow(zoom=2.0))
    assert torch.equal(half[:, :, 2, 3], w[:, :, 2, 3])  # the center stays on a grid point
    torch.testing.assert_close(half[:, :, 2, 0], (w[:, :, 2, 1] + w[:, :, 2, 2]) / 2)
    torch.testing.assert_close(half[:, :, 1, 0], _bilinear(w, 1.5, 1.5))
    torch.testing.assert_close(half[:, :, 1, 0], w[:, :, 1:3, 1:3].mean(dim=(2, 3)))
    emb(1, CoordinateWindow(shift=(0.3, 0.1), zoom=1.5)).sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def _bilinear(w: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """``w (1, C, H, W)`` at pixel position ``(x, y)`` inside the grid."""
    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - x0, y - y0
    return ((1 - fy) * ((1 - fx) * w[:, :, y0, x0] + fx * w[:, :, y0, x0 + 1])
            + fy * ((1 - fx) * w[:, :, y0 + 1, x0] + fx * w[:, :, y0 + 1, x0 + 1]))


@pytest.mark.parametrize("k", [1, 5, 16])
def test_per_pixel_model_agrees_on_the_overlap(k):
    """CIPS (1x1 convolutions, no reduction): every pixel depends on its own coordinates only,
    so a window shifted by k pixels repeats the training frame's pixels on the overlap
    (noise off: noise images are tied to the output pixels, not the coordinates), and a
    panorama's middle tile is the image itself."""
    G = _model("cips-tiny-32")
    z = torch.randn(2, G.z_dim)
    n = G.resolution[1]
    with torch.no_grad():
        ref = G(z, noise_mode="none")
        moved = G(z, noise_mode="none", window=CoordinateWindow(shift=(k / n, k / n)))
    torch.testing.assert_close(moved[..., :n - k, :n - k], ref[..., k:, k:], atol=1e-5, rtol=0)
    assert aligned_shift(G) == 1 / n


def test_pixelfolder_overlap_is_not_per_pixel():
    """PixelFolder: with a shift by whole fold cells (aligned_shift: half a frame for the tiny
    32x32 model, whose stage 0 folds 8x8 to 2x2) every stage's positional input repeats the
    training frame's on the overlap, exactly; the images do not, because the 3x3 modulated
    convolutions (zero-padded at the window's border) mix each cell with its neighbors, and
    at 2x2 every cell of stage 0 is a border cell. Said in the docs; tested so it stays
    true."""
    G = _model("pixelfolder-tiny-32")
    z = torch.randn(1, G.z_dim)
    step = aligned_shift(G)
    assert step == 0.5
    window = CoordinateWindow(shift=(float(step), 0))
    with torch.no_grad():
        for stage in G.synthesis.stages:
            base, moved = stage.positional_input(1), stage.positional_input(1, window)
            cells = base.shape[3] // 2
            torch.testing.assert_close(moved[..., :cells], base[..., cells:], atol=1e-5, rtol=0)
        ref = G(z, noise_mode="none")
        img = G(z, noise_mode="none", window=window)
    overlap = (img[..., :16] - ref[..., 16:]).abs()
    assert overlap.amax() > 0.1


def test_style_free_cache_is_keyed_on_the_window():
    """The cached style-free input of one window is never returned for another: each window
    gives what autograd mode (no cache) gives, and the training frame comes back bit for
    bit."""
    G = _model("pixelfolder-tiny-32")
    ws = G.mapping(torch.randn(2, G.z_dim)).detach()
    windows = [None, CoordinateWindow(shift=(1, 0)), CoordinateWindow(zoom=2.0),
               CoordinateWindow(shift=(1, 0), padding="zeros"), None]
    uncached = [G.synthesis(ws, noise_mode="const", window=w).detach() for w in windows]
    with torch.no_grad():
        cached = [G.synthesis(ws, noise_mode="const", window=w) for w in windows]
    for want, got in zip(uncached, cached, strict=True):
        torch.testing.assert_close(got, want)
    assert torch.equal(cached[0], cached[-1])
    assert not torch.allclose(cached[0], cached[1])
    assert not torch.allclose(cached[1], cached[3])  # the padding is part of the key


def test_window_under_torch_compile():
    G = _model("pixelfolder-tiny-32")
    z = torch.randn(2, G.z_dim)
    compiled = torch.compile(G, fullgraph=True, backend="aot_eager")
    window = CoordinateWindow(shift=(0.5, -1.0), zoom=1.5)
    torch.testing.assert_close(compiled(z, noise_mode="const", window=window),
                               G(z, noise_mode="const", window=window))


def test_panorama_windows_and_images():
    """Tiles one window width apart, the given window in the middle; the panorama is the
    tiles side by side."""
    shifts = [w.shift for w in panorama_windows(3, CoordinateWindow(shift=(0.0, 0.5), zoom=2))]
    assert shifts == [(-0.5, 0.5), (0.0, 0.5), (0.5, 0.5)]
    assert [w.shift[0] for w in panorama_windows(4)] == [-2.0, -1.0, 0.0, 1.0]
    G = _model("pixelfolder-tiny-32")
    pano = panorama_images(G, [3, 4], 3)
    assert pano.shape == (2, 3, 32, 96)
    torch.testing.assert_close(pano[..., 32:64], generate_images(G, [3, 4]))
    torch.testing.assert_close(pano[..., 64:], generate_images(
        G, [3, 4], window=CoordinateWindow(shift=(1, 0))))
    for bad in (0, 65, 2.0, True):
        with pytest.raises(ConfigError, match="a panorama needs 1 to 64 windows"):
            panorama_windows(bad)


def test_window_values_are_checked():
    assert parse_shift(" 1, -0.5 ") == (1.0, -0.5)
    assert parse_zoom("0.25") == 0.25
    for bad in ("1", "1,2,3", "a,b", "", "inf,0", "nan,1"):
        with pytest.raises(ConfigError, match="bad shift"):
            parse_shift(bad)
    for bad in ("0", "-2", "inf", "nan", "x"):
        with pytest.raises(ConfigError, match="bad zoom"):
            parse_zoom(bad)
    for kwargs in ({"zoom": 0}, {"zoom": float("nan")}, {"shift": (1,)},
                   {"shift": (float("inf"), 0)}, {"shift": ("1", 0)}, {"padding": "wrap"}):
        with pytest.raises(ValueError, match="CoordinateWindow"):
            CoordinateWindow(**kwargs)
    G = _model("pixelfolder-tiny-32")
    with pytest.raises(TypeError, match="window must be a CoordinateWindow .* got tuple"):
        G(torch.randn(1, G.z_dim), window=(1, 0))


def test_cli_shift_zoom_panorama(tmp_path, capsys):
    model = tmp_path / "model"
    _model("pixelfolder-tiny-32").save_pretrained(model)
    assert main(["generate", str(model), "--seeds", "0-1", "--out", str(tmp_path / "a")]) == 0
    assert main(["generate", str(model), "--seeds", "0-1", "--out", str(tmp_path / "b"),
                 "--shift", "0,0", "--zoom", "1"]) == 0
    assert (tmp_path / "a" / "seed0001.png").read_bytes() == \
        (tmp_path / "b" / "seed0001.png").read_bytes()
    assert main(["generate", str(model), "--seeds", "0-1", "--out", str(tmp_path / "p.png"),
                 "--grid", "--panorama", "3", "--shift", "0.5,0", "--zoom", "2"]) == 0
    assert Image.open(tmp_path / "p.png").size == (96, 64)  # one column of two panoramas
    assert main(["generate", str(model), "--seeds", "0", "--out", str(tmp_path / "c"),
                 "--panorama", "2", "--embedding-padding", "reflection"]) == 0
    assert Image.open(tmp_path / "c" / "seed0000.png").size == (64, 32)
    assert "wrote 1 panoramas" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--shift", "1"], "--shift: bad shift '1': expected DX,DY"),
    (["--shift", "x,0"], "--shift: bad shift 'x,0'"),
    (["--shift", "nan,0"], "--shift: bad shift 'nan,0': DX and DY must be finite"),
    (["--zoom", "0"], "--zoom: bad zoom '0': the zoom must be a finite number > 0"),
    (["--zoom", "-1"], "--zoom: bad zoom '-1'"),
    (["--zoom", "big"], "--zoom: bad zoom 'big'"),
    (["--panorama", "0"], "--panorama 0: give 1 to 64 windows"),
    (["--panorama", "100"], "--panorama 100: give 1 to 64 windows"),
])
def test_cli_bad_window_values(tmp_path, capsys, args, message):
    """One line naming the value, status 2, before any model is loaded (a model that does
    not exist is never looked at), nothing written."""
    code = main(["generate", str(tmp_path / "no-such-model"), "--seeds", "0", "--out",
                 str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == f"pixelfold generate: error: {message}" or \
        err[0].startswith(f"pixelfold generate: error: {message}")
    assert not (tmp_path / "out").exists()
