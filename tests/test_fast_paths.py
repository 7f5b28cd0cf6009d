"""Every fast path equals the straightforward computation to float tolerance.

The straightforward implementation is the package's reference, ``use_impl("ref")`` (the one
the benchmarks time): per-sample grouped ModConv, FIR resampling by zero insertion + explicit
padding + conv, fresh noise for every layer, separate element-wise operations.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pixelfold.layers import (
    Blur,
    Downsample,
    EqualConv2d,
    ModulatedConv2d,
    NoiseInjection,
    StyledConv2d,
    ToRGB,
    Upsample,
    make_kernel,
    modulated_conv2d,
    upfirdn2d,
    use_impl,
)
from pixelfold.layers.conv import conv2d
from pixelfold.layers.noise import set_noise_skipping
from pixelfold.layers.ops import conv_fast, modconv_fast
from pixelfold.layers.testing import trained_like
from pixelfold.layers.upfirdn import both_axes, filter2d, upsample2d
from pixelfold.models import Discriminator, DiscriminatorSpec, Generator, presets

CL = torch.channels_last


def upfirdn2d_reference(x, kernel, up=1, down=1, padding=(0, 0)):
    """The reference upfirdn2d, ``padding`` as ``(pad0, pad1)`` on both axes."""
    return upfirdn2d(x, kernel, up=up, down=down, padding=both_axes(padding), impl="ref")


def reference_generator(G, z, noise_mode="random"):
    with use_impl("ref"):
        return G(z, noise_mode=noise_mode)


def reference_discriminator(D, images):
    with use_impl("ref"):
        return D(images)


def reference_to_rgb(layer, x, w, skip):
    with use_impl("ref"):
        return layer(x, w, skip)


# ---------------------------------------------------------------- FIR filters


@pytest.mark.parametrize("taps", [(1, 3, 3, 1), (1, 2, 1), (1, 2, 3, 2, 1), (2, 1)])
@pytest.mark.parametrize("factor", [2, 3])
def test_upsample_equals_upfirdn2d(taps, factor):
    layer = Upsample(taps, factor)
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    expected = upfirdn2d(x, layer.kernel.double(), up=factor, padding=both_axes(layer.pad),
                         impl="ref")
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer(x.contiguous(memory_format=CL)), expected)
    torch.testing.assert_close(upfirdn2d_reference(x, layer.kernel.double(), up=factor,
                                                   padding=layer.pad), expected)


@pytest.mark.parametrize("pad", [(2, 1), (1, 1), (2, 2), (0, 3), (3, 0), (2, 1, 2, 1),
                                 (0, 3, 0, 3), (3, 0, 3, 0), (2, 1, 1, 2), (0, 3, 2, 1)])
def test_upsample2d_any_kernel_and_padding_equals_upfirdn2d(pad):
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    k2 = torch.randn(4, 4, dtype=torch.float64)  # asymmetric: the orientation matters
    torch.testing.assert_close(upsample2d(x, k2, 2, pad),
                               upfirdn2d(x, k2, up=2, padding=pad, impl="ref"))
    taps = (0.1, 0.7, 0.5, -0.3)
    t = torch.tensor(taps, dtype=torch.float64)
    torch.testing.assert_close(upsample2d(x, taps, 2, pad),
                               upfirdn2d(x, t[:, None] * t[None, :], up=2, padding=pad,
                                         impl="ref"))


def test_rgb_skip_upsampling_float32_and_gradient():
    up = Upsample()
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    ref = x.detach().clone().requires_grad_(True)
    a = up(x)
    b = upfirdn2d_reference(ref, up.kernel, up=2, padding=up.pad)
    torch.testing.assert_close(a, b)
    g = torch.randn_like(a)
    a.backward(g)
    b.backward(g)
    torch.testing.assert_close(x.grad, ref.grad)


@pytest.mark.parametrize("pad", [(2, 2), (1, 1), (2, 1), (1, 2, 0, 3), (-1, 2, 1, 1),
                                 (2, 2, 1, 1), (2, 1, 2, 1)])
@pytest.mark.parametrize("down", [1, 2])
def test_filter2d_equals_upfirdn2d_with_double_backward(pad, down):
    k = torch.randn(4, 3, dtype=torch.float64)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    xr = x.detach().clone().requires_grad_(True)
    a, b = filter2d(x, k, pad, down), upfirdn2d(xr, k, down=down, padding=pad, impl="ref")
    torch.testing.assert_close(a, b)
    # R1-style: gradient with create_graph, then the gradient of a function of it
    (ga,) = torch.autograd.grad(a.square().sum(), x, create_graph=True)
    (gb,) = torch.autograd.grad(b.square().sum(), xr, create_graph=True)
    torch.testing.assert_close(ga, gb)
    (ha,) = torch.autograd.grad(ga.pow(3).sum(), x)
    (hb,) = torch.autograd.grad(gb.pow(3).sum(), xr)
    torch.testing.assert_close(ha, hb)


def test_blur_and_downsample_modules_equal_upfirdn2d():
    x = torch.randn(2, 5, 12, 12).contiguous(memory_format=CL)
    blur, down = Blur((1, 3, 3, 1), (2, 1)), Downsample((1, 3, 3, 1), 2)
    torch.testing.assert_close(blur(x), upfirdn2d_reference(x, blur.kernel, padding=(2, 1)))
    torch.testing.assert_close(down(x), upfirdn2d_reference(x, down.kernel, down=2,
                                                            padding=down.pad))


@pytest.mark.parametrize("stride,padding,size", [(1, 1, 7), (1, 0, 6), (2, 0, 9), (2, 1, 8)])
@pytest.mark.parametrize("bias", [False, True])
def test_conv2d_equals_f_conv2d_to_third_order(stride, padding, size, bias):
    """pixelfold's conv2d (its own input-gradient node) against F.conv2d: value, gradient,
    gradient of a function of the input gradient (R1) for the input, weight and bias, and one
    order more; gradgradcheck on top."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size + 1, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64) if bias else None

    def grads(fn):
        xs = x.clone().requires_grad_(True)
        ws = w.clone().requires_grad_(True)
        bs = None if b is None else b.clone().requires_grad_(True)
        y = fn(xs, ws, bs, stride=stride, padding=padding)
        (gx,) = torch.autograd.grad(y.square().sum(), xs, create_graph=True)
        leaves = [xs, ws] + ([bs] if bs is not None else [])
        second = torch.autograd.grad(gx.pow(3).sum(), leaves, create_graph=True)
        third = torch.autograd.grad(sum(g.square().sum() for g in second), leaves,
                                    allow_unused=True)
        return [y, gx, *second, *third]

    expected = grads(F.conv2d)
    for fn in (conv2d, conv_fast.conv2d_gradfix):  # the latter: any stride, its own nodes
        for u, v in zip(grads(fn), expected, strict=True):
            assert (u is None) == (v is None)
            if u is not None:
                torch.testing.assert_close(u, v)
    xs = x[:, :, :5, :5].clone().requires_grad_(True)
    ws = w.clone().requires_grad_(True)
    torch.autograd.gradgradcheck(lambda a, c: conv2d(a, c, None, stride, padding), (xs, ws))
    if stride != 1:  # conv2d runs F.conv2d there
        torch.autograd.gradgradcheck(
            lambda a, c: conv_fast.conv2d_gradfix(a, c, None, stride, padding), (xs, ws))


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_channels_last_gradients_and_unused_weight_gradient(stride, monkeypatch):
    """Channels-last input (the fast stride-2 weight gradient goes through NCHW copies): the
    first-order gradients equal F.conv2d's and keep the weight's layout; a backward pass that
    needs only the input gradient (R1's autograd.grad) computes no weight gradient."""
    torch.manual_seed(0)
    monkeypatch.setattr(conv_fast, "_NCHW_MIN_PIXELS", 1)  # the NCHW route at a test's size
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64).contiguous(memory_format=CL)
    w = torch.randn(5, 6, 3, 3, dtype=torch.float64).contiguous(memory_format=CL)
    b = torch.randn(5, dtype=torch.float64)

    def grads(fn):
        leaves = [t.clone().requires_grad_(True) for t in (x, w, b)]
        y = fn(*leaves, stride=stride, padding=1)
        return [y, *torch.autograd.grad(y.square().sum(), leaves)]

    got, expected = grads(conv2d), grads(F.conv2d)
    for u, v in zip(got, expected, strict=True):
        torch.testing.assert_close(u, v)
    assert got[2].is_contiguous(memory_format=CL)
    calls = []
    real = conv_fast._weight_grad
    monkeypatch.setattr(conv_fast, "_weight_grad", lambda *a, **k: calls.append(1) or real(*a, **k))
    xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    y = conv2d(xs, ws * 1.0, None, stride, 1)  # a non-leaf weight, as the models pass it
    (gx,) = torch.autograd.grad(y.square().sum(), xs, create_graph=True)
    assert calls == []
    torch.testing.assert_close(gx, torch.autograd.grad(
        F.conv2d(x.requires_grad_(True), w, None, stride, 1).square().sum(), x)[0])
    gx.square().sum().backward()  # the R1 step's second backward: the weight's gradient
    assert ws.grad is not None and ws.grad.abs().sum() > 0


def test_conv2d_without_autograd_and_bad_shapes():
    x, w = torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3)
    with torch.no_grad():
        assert conv2d(x, w, padding=1).grad_fn is None
    torch.testing.assert_close(conv2d(x, w, padding=1), F.conv2d(x, w, padding=1))
    with pytest.raises(ValueError, match=r"weight \(2, 4, 3, 3\)"):
        conv2d(x, torch.randn(2, 4, 3, 3))


def test_conv2d_under_autocast_saves_and_returns_the_autocast_dtype():
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv2d(x, w, padding=1)
        expected = F.conv2d(x, w, padding=1)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, expected)
    (gx,) = torch.autograd.grad(y.float().square().sum(), x, create_graph=True)
    (gw,) = torch.autograd.grad(gx.square().sum(), w)
    (gx2,) = torch.autograd.grad(expected.float().square().sum(), x, create_graph=True)
    (gw2,) = torch.autograd.grad(gx2.square().sum(), w)
    assert gx.dtype == gw.dtype == torch.float32
    torch.testing.assert_close(gx, gx2)
    torch.testing.assert_close(gw, gw2, rtol=0.02, atol=0.02 * gw2.abs().max().item())


def test_pointwise_conv_merges_parts_without_concatenating():
    from pixelfold.models.generator import PointwiseConv

    torch.manual_seed(0)
    conv = PointwiseConv(5 + 3, 4)
    with torch.no_grad():
        conv.act.bias.normal_()
    shared, per_sample = torch.randn(1, 5, 6, 6), torch.randn(3, 3, 6, 6)
    whole = torch.cat([shared.expand(3, -1, -1, -1), per_sample], dim=1)
    expected = conv.act(conv.conv(whole))
    torch.testing.assert_close(conv(shared, per_sample), expected)
    torch.testing.assert_close(conv(whole), expected)
    with pytest.raises(ValueError, match=r"8 input channels in all, got parts of \[5, 4\]"):
        conv(shared, torch.randn(3, 4, 6, 6))


# ---------------------------------------------------------------- noise


def test_zero_strength_noise_skipping_is_identical_and_draws_nothing():
    layer = NoiseInjection(4)
    x = torch.randn(2, 3, 4, 4)
    plain = layer(x)  # adds 0 * fresh noise
    layer.skip_zero_strength = True
    state = torch.get_rng_state()
    with torch.no_grad():
        skipped = layer(x)
    assert torch.equal(torch.get_rng_state(), state)  # nothing was drawn
    assert torch.equal(skipped, plain) and torch.equal(skipped, x)
    # while autograd records the strength, noise is drawn so that the strength gets a gradient
    out = layer(x)
    assert not torch.equal(torch.get_rng_state(), state)
    out.sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().item() > 0
    # non-zero strength: never skipped
    with torch.no_grad():
        layer.weight.fill_(0.5)
        torch.manual_seed(3)
        a = layer(x)
        layer.skip_zero_strength = False
        torch.manual_seed(3)
        b = layer(x)
    assert torch.equal(a, b) and not torch.equal(a, x)


def test_set_noise_skipping_and_generator_output():
    G = Generator.from_preset("pixelfolder-tiny-32").eval()
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        expected = G(z, noise_mode="random")  # fresh: every strength is exactly 0
        assert set_noise_skipping(G) == 8
        state = torch.get_rng_state()
        out = G(z, noise_mode="random")
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert set_noise_skipping(G, False) == 8
    assert not any(m.skip_zero_strength for m in G.modules() if isinstance(m, NoiseInjection))


# ---------------------------------------------------------------- ModConv and fused blocks


@pytest.mark.parametrize("path", ["auto", "batched", "grouped"])
@pytest.mark.parametrize(("batch", "k"), [(1, 3), (3, 3), (1, 1), (3, 1)])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv2d_bias_and_gain(path, batch, k, demodulate):
    x = torch.randn(batch, 6, 5, 4, dtype=torch.float64)
    weight = torch.randn(7, 6, k, k, dtype=torch.float64)
    styles = torch.randn(batch, 6, dtype=torch.float64)
    bias = torch.randn(7, dtype=torch.float64)
    plain = modulated_conv2d(x, weight, styles, demodulate=demodulate, padding=k // 2,
                             path="grouped")
    expected = 1.7 * plain + bias[None, :, None, None]
    for inp in (x, x.contiguous(memory_format=CL)):
        out = modulated_conv2d(inp, weight, styles, demodulate=demodulate, padding=k // 2,
                               path=path, bias=bias, gain=1.7)
        torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(("batch", "k", "path"),
                         [(1, 3, "auto"), (3, 3, "auto"), (3, 1, "auto"), (3, 3, "grouped")])
@pytest.mark.parametrize("channels_last", [False, True])
def test_styled_conv_fused_equals_unfused(batch, k, path, channels_last):
    block = trained_like(StyledConv2d(6, 8, k, 16, resolution=5, path=path)).double()
    x = torch.randn(batch, 6, 5, 5, dtype=torch.float64)
    if channels_last:
        block, x = block.to(memory_format=CL), x.contiguous(memory_format=CL)
    w = torch.randn(batch, 16, dtype=torch.float64)
    noise = torch.randn(batch, 1, 5, 5, dtype=torch.float64)

    def unfused(x: torch.Tensor) -> torch.Tensor:
        return block.activate(block.noise(block.conv(x, w), noise=noise))

    with torch.no_grad():  # the in-place epilogue
        torch.testing.assert_close(block(x, w, noise=noise), unfused(x))
        torch.testing.assert_close(block(x, w, "const"),
                                   block.activate(block.noise(block.conv(x, w), "const")))
        torch.testing.assert_close(block(x, w, "none"), block.activate(block.conv(x, w)))
    # with autograd: same output and same gradients for every parameter
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    out = block(xa, w, noise=noise)
    g = torch.randn_like(out)
    grads_a = torch.autograd.grad(out, [xa, *block.parameters()], g)
    grads_b = torch.autograd.grad(unfused(xb), [xb, *block.parameters()], g)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b)


def test_to_rgb_fused_bias_equals_reference():
    layer = trained_like(ToRGB(8, 16))
    x, w, skip = torch.randn(3, 8, 8, 8), torch.randn(3, 16), torch.randn(3, 3, 4, 4)
    torch.testing.assert_close(layer(x, w, skip), reference_to_rgb(layer, x, w, skip))
    torch.testing.assert_close(layer(x.contiguous(memory_format=CL), w, skip),
                               reference_to_rgb(layer, x, w, skip))


# ---------------------------------------------------------------- whole models


def _tiny_deconv() -> Generator:
    """pixelfolder-tiny-32 with the Fold + DeConv ablation's upsampling ModConvs."""
    spec = presets.pixelfolder((8, 32), channels={1: 64, 2: 64, 4: 64, 8: 64, 16: 32, 32: 16},
                               z_dim=64, w_dim=64, mapping_layers=2, stage0_projection=4,
                               grow="deconv")
    return Generator(spec)


def _compare_generator(name: str, batch: int, channels_last: bool, rtol: float,
                       atol: float) -> None:
    torch.manual_seed(0)
    G = _tiny_deconv() if name == "tiny-deconv" else Generator.from_preset(name)
    G = trained_like(G.eval()).to(memory_format=torch.contiguous_format)
    z = torch.randn(batch, G.z_dim)
    with torch.no_grad():
        torch.manual_seed(1)
        expected = reference_generator(G, z, noise_mode="random")
        if channels_last:
            G = G.to(memory_format=CL)
        torch.manual_seed(1)  # the same fresh noise, drawn in the same order
        out = G(z, noise_mode="random")
        torch.testing.assert_close(out, expected, rtol=rtol, atol=atol)
        torch.testing.assert_close(G(z, noise_mode="const"),
                                   reference_generator(G, z, noise_mode="const"),
                                   rtol=rtol, atol=atol)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", ["pixelfolder-tiny-32", "cips-tiny-32", "tiny-deconv"])
def test_generator_fast_equals_reference(name, batch, channels_last):
    _compare_generator(name, batch, channels_last, rtol=1e-4, atol=1e-4)


def test_pixelfolder_256_fast_equals_reference_batch_1():
    _compare_generator("pixelfolder-256", 1, True, rtol=1e-4, atol=2e-4)


def test_generator_gradients_equal_reference():
    torch.manual_seed(0)
    G = trained_like(Generator.from_preset("pixelfolder-tiny-32"))
    z = torch.randn(2, G.z_dim)
    params = list(G.parameters())
    torch.manual_seed(1)
    fast = torch.autograd.grad(G(z).square().mean(), params, allow_unused=True)
    torch.manual_seed(1)
    ref = torch.autograd.grad(reference_generator(G, z).square().mean(), params,
                              allow_unused=True)
    for a, b in zip(fast, ref, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("bias", [False, True])
def test_pixel_rows_matmul_equals_baddbmm_to_second_order(bias):
    """The pointwise ModConv's product (its own backward, for the channels-last ToRGB):
    value, gradients and gradients of a function of the gradient against ``torch.baddbmm``;
    gradgradcheck on top."""
    torch.manual_seed(0)
    rows = torch.randn(2, 7, 5, dtype=torch.float64)
    wb = torch.randn(2, 3, 5, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float64) if bias else None

    def plain(r, w, c):
        return torch.bmm(r, w.transpose(1, 2)) if c is None else torch.baddbmm(
            c, r, w.transpose(1, 2))

    def grads(fn):
        leaves = [rows.clone().requires_grad_(True), wb.clone().requires_grad_(True)]
        if b is not None:
            leaves.append(b.clone().requires_grad_(True))
        y = fn(leaves[0], leaves[1], leaves[2] if b is not None else None)
        first = torch.autograd.grad(y.pow(3).sum(), leaves, create_graph=True)
        second = torch.autograd.grad(sum(g.square().sum() for g in first), leaves)
        return [y, *first, *second]

    for u, v in zip(grads(modconv_fast._pixel_rows_matmul), grads(plain), strict=True):
        torch.testing.assert_close(u, v)
    inputs = (rows.clone().requires_grad_(True), wb.clone().requires_grad_(True))
    torch.autograd.gradgradcheck(lambda r, w: modconv_fast._pixel_rows_matmul(r, w, b), inputs)


@pytest.mark.parametrize("threads", [1, 2])
def test_channels_last_gradients_equal_float64_on_any_thread_count(threads):
    """The default (channels-last) generator's gradients against a float64 NCHW copy, on one
    and two threads: oneDNN picks different kernels per thread count, and one of them gave
    wrong weight gradients for grouped 1x1 convolutions with oddly strided weights."""
    import copy

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        G = trained_like(Generator.from_preset("pixelfolder-tiny-32"))
        z = torch.randn(2, G.z_dim)
        G64 = copy.deepcopy(G).double().to(memory_format=torch.contiguous_format)
        for path in ("auto", "grouped", "batched"):
            for m in G.modules():
                if isinstance(m, ModulatedConv2d):
                    m.path = path
            grads = torch.autograd.grad(G(z, noise_mode="const").square().mean(),
                                        list(G.parameters()), allow_unused=True)
            truth = torch.autograd.grad(G64(z.double(), noise_mode="const").square().mean(),
                                        list(G64.parameters()), allow_unused=True)
            for (name, _), a, t in zip(G.named_parameters(), grads, truth, strict=True):
                assert (a is None) == (t is None), name
                if a is not None:
                    err = (a.double() - t).abs().max() / (t.abs().max() + 1e-12)
                    assert err < 1e-3, (path, name, err.item())
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("blur_kernel", [(1, 3, 3, 1), (1, 2, 1)])
def test_discriminator_and_r1_equal_reference(blur_kernel):
    torch.manual_seed(0)
    D = trained_like(Discriminator(DiscriminatorSpec(
        resolution=32, channels={4: 16, 8: 16, 16: 8, 32: 8}, blur_kernel=blur_kernel),
        memory_format=torch.contiguous_format))
    x = torch.randn(4, 3, 32, 32)
    for model_x in (x, x.contiguous(memory_format=CL)):
        model = D.to(memory_format=CL) if model_x.is_contiguous(memory_format=CL) else D
        xa = model_x.clone().requires_grad_(True)
        xb = x.clone().requires_grad_(True)
        a, b = model(xa), reference_discriminator(D, xb)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        (ga,) = torch.autograd.grad(a.sum(), xa, create_graph=True)
        (gb,) = torch.autograd.grad(b.sum(), xb, create_graph=True)
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)
        params = list(D.parameters())
        ha = torch.autograd.grad(ga.square().sum(), params, allow_unused=True)
        hb = torch.autograd.grad(gb.square().sum(), params, allow_unused=True)
        for u, v in zip(ha, hb, strict=True):
            assert (u is None) == (v is None)
            if u is not None:
                torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-6)


def test_r1_through_the_discriminator_runs_few_convolutions():
    """A structural guard for R1's cost: every filter of the discriminator keeps a depthwise
    double backward. Autograd's generic double backward of a grouped convolution runs one
    convolution per channel (here 64 per blur), which would push the count into the
    hundreds."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountConvolutions(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten.convolution,
                                       torch.ops.aten.convolution_backward):
                self.count += 1
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    D = Discriminator(DiscriminatorSpec(resolution=16, channels={4: 64, 8: 64, 16: 64}))
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    with CountConvolutions() as counter:
        (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
        grad.square().sum().backward()
    convs = 1 + 3 * len(D.blocks) + 1  # from_rgb, three per block, final_conv
    assert 0 < counter.count < 12 * convs, counter.count  # 68 when written
    assert all(m.weight.grad is not None for m in D.modules() if isinstance(m, EqualConv2d))
    # the same R1 through the straightforward implementation's blurs
    with CountConvolutions() as reference:
        (grad,) = torch.autograd.grad(reference_discriminator(D, x).sum(), x,
                                      create_graph=True)
        grad.square().sum().backward()
    assert reference.count > 64 * len(D.blocks) > 0  # 312 when written
    assert reference.count > 3 * counter.count


def test_bfloat16_autocast_close_to_float32():
    torch.manual_seed(0)
    G = trained_like(Generator.from_preset("pixelfolder-tiny-32").eval())
    z = torch.randn(2, G.z_dim)
    with torch.inference_mode():
        ref = G(z, noise_mode="const")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = G.to(memory_format=CL)(z, noise_mode="const")
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max()


# ---------------------------------------------------------------- torch.compile


def test_generator_compiles_without_graph_breaks():
    """One compilation (fullgraph: a graph break raises), forward and backward, with fresh
    random noise drawn inside the graph."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    G = trained_like(Generator.from_preset("pixelfolder-tiny-32"))
    z = torch.randn(2, G.z_dim)
    weight = G.synthesis.stages[0].blocks[0].conv0.conv.weight
    compiled = torch.compile(G, fullgraph=True, backend="aot_eager")
    torch.manual_seed(1)
    out = compiled(z, noise_mode="random")
    (grad,) = torch.autograd.grad(out.square().mean(), [weight])
    torch.manual_seed(1)
    expected = G(z, noise_mode="random")
    (expected_grad,) = torch.autograd.grad(expected.square().mean(), [weight])
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_discriminator_compiles_without_graph_breaks():
    torch._dynamo.reset()
    D = Discriminator(DiscriminatorSpec(resolution=16, channels={4: 8, 8: 8, 16: 8}))
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    compiled = torch.compile(D, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), D(x))
    F.softplus(compiled(x)).mean().backward()
    assert x.grad is not None


def test_upsample_kernel_matches_make_kernel():
    # the separable taps reproduce the 2-D kernel buffer
    up = Upsample((1, 3, 3, 1), 2)
    t = torch.tensor(up.taps)
    torch.testing.assert_close(t[:, None] * t[None, :], make_kernel([1, 3, 3, 1]) * 4)


def test_device_check_script_passes_on_cpu(tmp_path):
    """benchmarks/check_device.py, the fast-path checks to run on a GPU machine, passes here."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "check_device.py"),
                           "--device", "cpu", "--no-compile", "--json-out", str(out)],
                          capture_output=True, text=True, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert len(results) >= 12 and all(r["ok"] for r in results)
    assert "12 of 12 checks passed" in proc.stdout
