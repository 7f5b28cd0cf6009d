"""The reference/fast switch, upfirdn2d's per-axis arguments, and FLOP counting without
autograd."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pixelfold.layers import (
    Blur,
    EqualConv2d,
    StyledConv2d,
    filter2d,
    get_impl,
    upfirdn2d,
    upsample2d,
    use_impl,
)
from pixelfold.layers.ops import resolve_impl
from pixelfold.metrics.profile import count_macs
from pixelfold.models import Generator

# ---------------------------------------------------------------- the switch


def test_use_impl_sets_and_restores_the_default():
    assert get_impl() == "fast"
    with use_impl("ref"):
        assert get_impl() == "ref" and resolve_impl(None) == "ref"
        assert resolve_impl("fast") == "fast"  # an explicit impl= wins
        with use_impl("fast"):
            assert get_impl() == "fast"
        assert get_impl() == "ref"
    assert get_impl() == "fast"
    with pytest.raises(RuntimeError), use_impl("ref"):
        raise RuntimeError("inside")
    assert get_impl() == "fast"  # restored after an exception too


def test_unknown_impl_is_refused_by_name():
    with pytest.raises(ValueError, match=r"impl must be one of \('ref', 'fast'\), got 'cuda'"):
        with use_impl("cuda"):  # type: ignore[arg-type]
            pass
    with pytest.raises(ValueError, match="got 'slow'"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2, 2), impl="slow")  # type: ignore[arg-type]


def test_reference_runs_the_readable_path_of_a_fused_layer():
    """Under use_impl("ref") a StyledConv2d runs its submodules one after the other; the fast
    path fuses them. Same values, different operations."""
    torch.manual_seed(0)
    block = StyledConv2d(4, 6, 3, 8, resolution=5)
    with torch.no_grad():
        block.noise.weight.fill_(0.3)
        block.activate.bias.normal_()
    x, w, n = torch.randn(2, 4, 5, 5), torch.randn(2, 8), torch.randn(2, 1, 5, 5)
    with use_impl("ref"):
        ref = block(x, w, noise=n)
    torch.testing.assert_close(ref, block.activate(block.noise(block.conv(x, w), noise=n)))
    torch.testing.assert_close(block(x, w, noise=n), ref)


def test_equal_conv2d_owns_the_fused_path():
    """gain * act(conv(blur(cat(parts)))) by the fast path equals the reference, for the
    discriminator's three kinds of convolution and for split inputs."""
    from pixelfold.layers import BiasLeakyReLU

    torch.manual_seed(0)
    act = BiasLeakyReLU(6)
    with torch.no_grad():
        act.bias.normal_()
    x = torch.randn(3, 4, 8, 8, requires_grad=True)
    cases = [(EqualConv2d(4, 6, 3, padding=1, bias=False), {"activation": act}),
             (EqualConv2d(4, 6, 3, stride=2, bias=False),
              {"activation": act, "blur": Blur((1, 3, 3, 1), (2, 2)), "gain": 0.5}),
             (EqualConv2d(4, 6, 1, stride=2, bias=False),
              {"blur": Blur((1, 3, 3, 1), (1, 1)), "gain": 0.7}),
             (EqualConv2d(4, 6, 1), {"gain": 2.0})]
    for conv, kwargs in cases:
        fast = conv(x, **kwargs)
        with use_impl("ref"):
            ref = conv(x, **kwargs)
        torch.testing.assert_close(fast, ref)
        (g_fast,) = torch.autograd.grad(fast.square().sum(), x)
        (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
        torch.testing.assert_close(g_fast, g_ref)
    conv = EqualConv2d(4 + 2, 6, 1, bias=False)
    shared, own = torch.randn(1, 4, 5, 5), torch.randn(3, 2, 5, 5)
    whole = torch.cat([shared.expand(3, -1, -1, -1), own], dim=1)
    torch.testing.assert_close(conv(shared, own, activation=act), act(conv(whole)))
    with pytest.raises(ValueError, match="gain must be positive with an activation"):
        conv(whole, activation=act, gain=0.0)
    with pytest.raises(ValueError, match=r"6 input channels in all, got parts of \[4, 3\]"):
        conv(shared, torch.randn(3, 3, 5, 5))


# ---------------------------------------------------------------- upfirdn2d per axis


def _per_axis_upfirdn(x, kernel, up, down, pads):
    """Straight from the definition, one axis at a time with explicit index arithmetic:
    ``out[i, j] = sum_{a, b} k[a, b] * z[i * dy + kh - 1 - a, j * dx + kw - 1 - b]``, where
    ``z`` is the zero-stuffed input placed with offsets ``(y0, x0)`` (a negative offset crops)."""
    (upx, upy), (downx, downy), (x0, x1, y0, y1) = up, down, pads
    b, c, h, w = x.shape
    zh, zw = h * upy + y0 + y1, w * upx + x0 + x1
    z = torch.zeros(b, c, zh, zw, dtype=x.dtype)
    for i in range(h):
        for j in range(w):
            r, s = i * upy + y0, j * upx + x0
            if 0 <= r < zh and 0 <= s < zw:
                z[:, :, r, s] = x[:, :, i, j]
    kh, kw = kernel.shape
    oh, ow = (zh - kh) // downy + 1, (zw - kw) // downx + 1
    out = torch.zeros(b, c, oh, ow, dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for bb in range(kw):
                    out[:, :, i, j] += kernel[a, bb] * z[:, :, i * downy + kh - 1 - a,
                                                         j * downx + kw - 1 - bb]
    return out


@pytest.mark.parametrize(("up", "down", "pads"), [
    ((1, 1), (1, 1), (2, 1, 0, 3)),
    ((1, 1), (2, 2), (1, 2, 2, 0)),
    ((2, 2), (1, 1), (2, 1, 1, 2)),
    ((2, 2), (1, 1), (0, 3, 2, 1)),
    ((2, 1), (1, 2), (1, 0, 2, 2)),
    ((1, 1), (1, 1), (-1, 2, 1, -1)),
    ((3, 3), (2, 2), (3, 1, 1, 2)),
])
@pytest.mark.parametrize("impl", ["ref", "fast"])
def test_upfirdn2d_non_square_padding_matches_a_per_axis_definition(up, down, pads, impl):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    k = torch.randn(3, 4, dtype=torch.float64)  # not square, not symmetric: orientation matters
    expected = _per_axis_upfirdn(x, k, up, down, pads)
    torch.testing.assert_close(upfirdn2d(x, k, up=up, down=down, padding=pads, impl=impl),
                               expected)
    if up == (1, 1) and down[0] == down[1]:
        torch.testing.assert_close(filter2d(x, k, pads, down[0], impl=impl), expected)
    if down == (1, 1) and up[0] == up[1]:
        torch.testing.assert_close(upsample2d(x, k, up[0], pads, impl=impl), expected)


def test_upfirdn2d_pair_is_pad_x_pad_y_as_nvlabs_reads_it():
    x = torch.randn(1, 1, 4, 6, dtype=torch.float64)
    k = torch.randn(2, 2, dtype=torch.float64)
    out = upfirdn2d(x, k, padding=(3, 1))
    assert out.shape == (1, 1, 4 + 2 - 1, 6 + 6 - 1)
    torch.testing.assert_close(out, _per_axis_upfirdn(x, k, (1, 1), (1, 1), (3, 3, 1, 1)))
    torch.testing.assert_close(upfirdn2d(x, k, up=(2, 1), padding=(1, 0)),
                               _per_axis_upfirdn(x, k, (2, 1), (1, 1), (1, 1, 0, 0)))
    with pytest.raises(ValueError, match=r"or \(x0, x1, y0, y1\), got \(1, 2, 3\)"):
        upfirdn2d(x, k, padding=(1, 2, 3))


def test_separable_taps_upsampling_with_per_axis_padding():
    """1-D taps (the separable form) with different paddings per axis: polyphase where both
    axes allow it, the reference otherwise."""
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    taps = (0.25, 0.75, 0.75, 0.25)
    t = torch.tensor(taps, dtype=torch.float64)
    k = t[:, None] * t[None, :]
    for pads in ((2, 1, 1, 2), (2, 1, 2, 1), (1, 1, 2, 2)):
        torch.testing.assert_close(upsample2d(x, taps, 2, pads),
                                   _per_axis_upfirdn(x, k, (2, 2), (1, 1), pads))


# ---------------------------------------------------------------- FLOP counting


@pytest.mark.parametrize("name", ["pixelfolder-tiny-32", "cips-tiny-32"])
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "enable_grad"])
def test_flop_counter_mode_counts_what_count_macs_counts(name, mode):
    """PyTorch's own FLOP counter works on a generator in every autograd mode (it crashed under
    no_grad and inference_mode) and agrees with count_macs (2 FLOPs per MAC)."""
    torch.manual_seed(0)
    G = Generator.from_preset(name).eval()
    z = torch.randn(2, G.z_dim)
    counter = FlopCounterMode(display=False)
    with getattr(torch, mode)(), counter:
        G(z)
    assert counter.get_total_flops() == 2 * 2 * count_macs(G, batch_size=2)
