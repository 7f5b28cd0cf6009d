"""Behaviour of the building-block layers against independent computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from pixelfold.layers import (
    BiasLeakyReLU,
    Blur,
    CoordinateEmbedding,
    Downsample,
    EqualConv2d,
    EqualLinear,
    FourierFeatures,
    MappingNetwork,
    MinibatchStdDev,
    ModulatedConv2d,
    NoiseInjection,
    PixelNorm,
    StyledConv2d,
    ToRGB,
    Upsample,
    bias_leaky_relu,
    coordinate_grid,
    make_kernel,
    modulated_conv2d,
    upfirdn2d,
)

# ---------------------------------------------------------------- activation / equalized


def test_bias_leaky_relu_matches_definition():
    x = torch.randn(2, 5, 3, 3)
    b = torch.randn(5)
    expected = torch.where(x + b[:, None, None] >= 0, x + b[:, None, None],
                           0.2 * (x + b[:, None, None])) * math.sqrt(2)
    torch.testing.assert_close(bias_leaky_relu(x, b), expected)
    layer = BiasLeakyReLU(5)
    with torch.no_grad():
        layer.bias.copy_(b)
    torch.testing.assert_close(layer(x), expected)
    # works on (B, C) too
    torch.testing.assert_close(bias_leaky_relu(x[:, :, 0, 0], b), expected[:, :, 0, 0])


def test_bias_leaky_relu_bad_bias():
    with pytest.raises(ValueError, match=r"bias \(4,\) for x \(2, 5, 3, 3\)"):
        bias_leaky_relu(torch.zeros(2, 5, 3, 3), torch.zeros(4))


def test_equal_linear_runtime_scaling():
    layer = EqualLinear(16, 8, lr_mul=0.01, bias_init=0.5)
    # stored weights are N(0,1)/lr_mul, stored bias is bias_init
    assert torch.allclose(layer.bias, torch.full((8,), 0.5))
    x = torch.randn(4, 16)
    expected = x @ (layer.weight * 0.01 / 4.0).t() + layer.bias * 0.01
    torch.testing.assert_close(layer(x), expected)
    act = EqualLinear(16, 8, activation="lrelu")
    expected = F.leaky_relu(x @ (act.weight / 4.0).t() + act.bias, 0.2) * math.sqrt(2)
    torch.testing.assert_close(act(x), expected)


def test_equal_linear_effective_weight_has_unit_fan_in_scale():
    layer = EqualLinear(512, 512, lr_mul=0.01)
    eff = layer.weight * layer.weight_gain
    assert abs(eff.std().item() * math.sqrt(512) - 1.0) < 0.02


def test_equal_conv2d():
    conv = EqualConv2d(3, 6, 3, padding=1, bias=True)
    x = torch.randn(2, 3, 5, 5)
    expected = F.conv2d(x, conv.weight / math.sqrt(27), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected)
    assert EqualConv2d(3, 6, 1, bias=False).bias is None


@pytest.mark.parametrize(
    ("ctor", "message"),
    [
        (lambda: EqualLinear(0, 4), "in_features must be a positive integer, got 0"),
        (lambda: EqualLinear(4, 4, activation="gelu"), "activation must be None or 'lrelu'"),
        (lambda: EqualLinear(4, 4, lr_mul=0), "lr_mul must be positive, got 0"),
        (lambda: EqualConv2d(3, 4, 3, padding=-1), "padding must be >= 0, got -1"),
        (lambda: ModulatedConv2d(4, 4, 2, 8), "kernel_size must be odd .* got 2"),
        (lambda: ModulatedConv2d(4, 4, 3, 8, path="fast"), "path must be .* got 'fast'"),
        (lambda: MappingNetwork(8, 8, 0), "num_layers must be >= 1, got 0"),
        (lambda: FourierFeatures(10, learned=False), "divisible by 2 \\* in_channels = 4, got 10"),
    ],
)
def test_constructor_errors_name_the_value(ctor, message):
    with pytest.raises(ValueError, match=message):
        ctor()


# ---------------------------------------------------------------- modulated convolution


def _reference_modconv(x, weight, styles, demodulate, eps=1e-8):
    """Per-sample loop: the definition, no batching tricks."""
    outs = []
    for b in range(x.shape[0]):
        wb = weight * styles[b][None, :, None, None]
        if demodulate:
            wb = wb / torch.sqrt(wb.pow(2).sum(dim=(1, 2, 3), keepdim=True) + eps)
        outs.append(F.conv2d(x[b:b + 1], wb, padding=weight.shape[-1] // 2))
    return torch.cat(outs)


@given(
    st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 3, 5]),
    st.booleans(), st.integers(0, 2**16),
)
def test_modconv_paths_agree_with_definition(batch, cin, cout, k, demod, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, 6, 5, generator=gen, dtype=torch.float64)
    weight = torch.randn(cout, cin, k, k, generator=gen, dtype=torch.float64)
    styles = torch.randn(batch, cin, generator=gen, dtype=torch.float64)
    ref = _reference_modconv(x, weight, styles, demod)
    for path in ("batched", "grouped"):
        out = modulated_conv2d(x, weight, styles, demodulate=demod, padding=k // 2, path=path)
        torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)


def test_modconv_module_paths_agree_float32():
    torch.manual_seed(1)
    layer = ModulatedConv2d(32, 48, 3, 64)
    x, w = torch.randn(4, 32, 8, 8), torch.randn(4, 64)
    a = layer(x, w)
    layer.path = "grouped"
    b = layer(x, w)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_modconv_modulation_bias_init_and_weight_shape():
    layer = ModulatedConv2d(8, 16, 3, 32)
    assert layer.weight.shape == (16, 8, 3, 3)
    assert torch.equal(layer.modulation.bias, torch.ones(8))
    assert layer.modulation.weight.shape == (8, 32)


def test_demodulated_modconv_keeps_unit_variance():
    """With unit-variance i.i.d. input, each demodulated output channel has variance ~1
    (interior pixels, where the 3x3 window sees no zero padding)."""
    torch.manual_seed(0)
    layer = ModulatedConv2d(64, 32, 3, 16)
    x = torch.randn(8, 64, 34, 34)
    w = torch.randn(8, 16)
    with torch.no_grad():
        y = layer(x, w)[:, :, 1:-1, 1:-1]
    var = y.transpose(0, 1).reshape(32, -1).var(dim=1)  # per output channel over B, H, W
    assert torch.all((var - 1.0).abs() < 0.1), var
    # without demodulation the variance follows the style magnitudes instead
    layer_nd = ModulatedConv2d(64, 32, 3, 16, demodulate=False)
    with torch.no_grad():
        y_nd = layer_nd(x * 10, w)[:, :, 1:-1, 1:-1]
    assert y_nd.var() > 10


def test_modconv_shape_errors():
    layer = ModulatedConv2d(8, 16, 3, 32)
    with pytest.raises(ValueError, match=r"expects \(B, 8, H, W\), got \(2, 4, 5, 5\)"):
        layer(torch.zeros(2, 4, 5, 5), torch.zeros(2, 32))
    with pytest.raises(ValueError, match=r"w of shape \(2, 32\), got \(3, 32\)"):
        layer(torch.zeros(2, 8, 5, 5), torch.zeros(3, 32))


def test_cips_conditional_independence_of_1x1_modconv_stack():
    """Pixel p of the output depends only on pixel p of the input: the gradient of output
    pixel p with respect to every other input pixel is exactly zero."""
    torch.manual_seed(0)
    h, w = 6, 5
    coords = coordinate_grid(h, w, batch_size=2).clone().requires_grad_(True)
    fourier = FourierFeatures(16)
    emb = CoordinateEmbedding(8, h, w)
    blocks = torch.nn.ModuleList([StyledConv2d(24, 16, 1, 12), StyledConv2d(16, 16, 1, 12)])
    to_rgb = ToRGB(16, 12, upsample=False)
    styles = torch.randn(2, 12)
    x = torch.cat([fourier(coords), emb(2)], dim=1)
    for block in blocks:
        x = block(x, styles, noise_mode="random")
    rgb = to_rgb(x, styles)
    for p in [(0, 0), (2, 3), (5, 4)]:
        grad, = torch.autograd.grad(rgb[:, :, p[0], p[1]].sum(), coords, retain_graph=True)
        mask = torch.ones(h, w, dtype=torch.bool)
        mask[p] = False
        assert torch.all(grad[:, :, mask] == 0)
        assert grad[:, :, p[0], p[1]].abs().sum() > 0
    # ... and a 3x3 ModConv, as a control, does mix neighbours
    conv3 = StyledConv2d(24, 4, 3, 12)
    out = conv3(torch.cat([fourier(coords), emb(2)], dim=1), styles)
    grad, = torch.autograd.grad(out[:, :, 2, 2].sum(), coords)
    assert grad[:, :, 1, 1].abs().sum() > 0


def test_to_rgb_skip_upsampling():
    torch.manual_seed(0)
    layer = ToRGB(8, 16)
    x, w = torch.randn(2, 8, 8, 8), torch.randn(2, 16)
    skip = torch.randn(2, 3, 4, 4)
    out = layer(x, w, skip)
    expected = layer.conv(x, w) + layer.bias + Upsample()(skip)
    torch.testing.assert_close(out, expected)
    assert not layer.conv.demodulate
    with pytest.raises(ValueError, match="does not match the output"):
        layer(x, w, torch.randn(2, 3, 8, 8))
    same = ToRGB(8, 16, upsample=False)
    torch.testing.assert_close(same(x, w, out), same(x, w) + out)


# ---------------------------------------------------------------- noise


def test_noise_modes():
    torch.manual_seed(0)
    layer = NoiseInjection(resolution=(4, 5))
    x = torch.zeros(2, 3, 4, 5)
    assert torch.equal(layer(x), x)  # strength initialized to 0
    with torch.no_grad():
        layer.weight.fill_(0.5)
    a, b = layer(x, "random"), layer(x, "random")
    assert not torch.equal(a, b)
    assert torch.equal(a[:, 0], a[:, 1])  # one noise image shared by the channels
    c1, c2 = layer(x, "const"), layer(x, "const")
    assert torch.equal(c1, c2) and torch.equal(c1[0], c1[1])
    torch.testing.assert_close(c1, 0.5 * layer.noise_const.expand(2, 3, 4, 5))
    assert torch.equal(layer(x, "none"), x)
    explicit = torch.ones(2, 1, 4, 5)
    assert torch.equal(layer(x, "none", noise=explicit), x + 0.5)
    assert "noise_const" in layer.state_dict()


def test_noise_errors():
    with pytest.raises(ValueError, match=r"noise_mode must be one of .* got 'fixed'"):
        NoiseInjection()(torch.zeros(1, 1, 2, 2), "fixed")
    with pytest.raises(ValueError, match="built without one"):
        NoiseInjection()(torch.zeros(1, 1, 2, 2), "const")
    with pytest.raises(ValueError, match=r"constant noise is \(4, 4\) but the input is \(2, 2\)"):
        NoiseInjection(4)(torch.zeros(1, 1, 2, 2), "const")


def test_styled_conv_without_noise_has_no_noise_parameters():
    block = StyledConv2d(4, 4, 3, 8, noise=False)
    assert not any("noise" in k for k in block.state_dict())
    x, w = torch.randn(1, 4, 4, 4), torch.randn(1, 8)
    assert torch.equal(block(x, w, "random"), block(x, w, "random"))


# ---------------------------------------------------------------- mapping


def test_pixel_norm():
    x = torch.randn(3, 7) * 5
    y = PixelNorm()(x)
    torch.testing.assert_close(y.square().mean(1), torch.ones(3), rtol=1e-5, atol=1e-5)


def test_mapping_network_shapes_truncation_and_w_avg():
    torch.manual_seed(0)
    net = MappingNetwork(32, 16, 4)
    assert len(net.layers) == 4 and all(layer.lr_mul == 0.01 for layer in net.layers)
    z = torch.randn(5, 32)
    w = net(z)
    assert w.shape == (5, 16)
    ws = net(z, num_ws=7)
    assert ws.shape == (5, 7, 16) and torch.equal(ws[:, 3], w)
    assert torch.equal(net.w_avg, torch.zeros(16))
    net(z, update_w_avg=True)
    torch.testing.assert_close(net.w_avg, w.mean(0) * (1 - net.w_avg_beta))
    # psi = 0 collapses to the average, psi = 1 is the identity
    torch.testing.assert_close(net(z, truncation_psi=0.0), net.w_avg.expand(5, 16))
    half = net(z, num_ws=7, truncation_psi=0.5, truncation_cutoff=3)
    torch.testing.assert_close(half[:, :3], net.w_avg + 0.5 * (ws[:, :3] - net.w_avg))
    assert torch.equal(half[:, 3:], ws[:, 3:])
    with pytest.raises(ValueError, match=r"expects z of shape \(B, 32\), got \(5, 31\)"):
        net(torch.zeros(5, 31))
    with pytest.raises(ValueError, match=r"truncation_cutoff must be in \[0, 7\], got 9"):
        net(z, num_ws=7, truncation_psi=0.5, truncation_cutoff=9)


def test_mapping_estimate_w_avg():
    net = MappingNetwork(8, 8, 2)
    avg = net.estimate_w_avg(2000, seed=3, batch_size=512)
    z = torch.randn(2000, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(avg, net(z).mean(0), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- positional


def test_coordinate_grid_rectangular():
    g = coordinate_grid(3, 5, batch_size=2)
    assert g.shape == (2, 2, 3, 5)
    assert torch.equal(g[0, 0, 1], torch.linspace(-1, 1, 5))  # x varies along columns
    assert torch.equal(g[0, 1, :, 2], torch.linspace(-1, 1, 3))  # y varies along rows
    assert g[0, 0, 0, 0] == -1 and g[0, 0, 0, -1] == 1 and g[0, 1, -1, 0] == 1
    with pytest.raises(ValueError, match="width must be a positive integer, got 0"):
        coordinate_grid(3, 0)


def test_fourier_features_init_and_forward():
    torch.manual_seed(0)
    ff = FourierFeatures(4096)
    bound = math.sqrt(9 / 2)
    assert ff.weight.shape == (4096, 2, 1, 1)
    assert ff.weight.abs().max() <= bound and ff.weight.abs().max() > 0.95 * bound
    assert ff.bias.abs().max() <= 1 / math.sqrt(2)
    coords = coordinate_grid(4, 6)
    expected = torch.sin(torch.einsum("oi,bihw->bohw", ff.weight[:, :, 0, 0], coords)
                         + ff.bias[None, :, None, None])
    torch.testing.assert_close(ff(coords), expected)
    assert sum(p.numel() for p in ff.parameters()) == 4096 * 3


def test_fixed_fourier_features_are_octaves():
    ff = FourierFeatures(12, learned=False)  # 3 frequencies x 2 coords x (sin, cos)
    assert list(ff.parameters()) == [] and ff.state_dict() == {}
    coords = coordinate_grid(4, 4)
    out = ff(coords)
    x, y = coords[:, 0], coords[:, 1]
    torch.testing.assert_close(out[:, 0], torch.sin(math.pi * x))
    torch.testing.assert_close(out[:, 1], torch.cos(math.pi * x))
    torch.testing.assert_close(out[:, 2], torch.sin(math.pi * y))
    torch.testing.assert_close(out[:, 9], torch.cos(4 * math.pi * x))


def test_coordinate_embedding():
    emb = CoordinateEmbedding(4, 3, 5)
    out = emb(2)
    assert out.shape == (2, 4, 3, 5) and torch.equal(out[1], emb.weight[0])


# ---------------------------------------------------------------- minibatch std


def test_minibatch_std_matches_loop():
    torch.manual_seed(0)
    x = torch.randn(8, 6, 3, 3)
    layer = MinibatchStdDev(group_size=4, num_channels=2)
    out = layer(x)
    assert out.shape == (8, 8, 3, 3) and torch.equal(out[:, :6], x)
    groups = 8 // 4
    for n in range(8):
        members = [m for m in range(8) if m % groups == n % groups]
        xs = x[members]  # (4, 6, 3, 3)
        std = (xs.var(dim=0, unbiased=False) + 1e-8).sqrt()  # (6, 3, 3)
        for f in range(2):
            expected = std[f * 3:(f + 1) * 3].mean()
            torch.testing.assert_close(out[n, 6 + f], expected.expand(3, 3))
    with pytest.raises(ValueError, match="batch size divisible by 4, got 6"):
        layer(torch.randn(6, 6, 3, 3))
    assert MinibatchStdDev(4)(torch.randn(3, 6, 2, 2)).shape == (3, 7, 2, 2)  # group clipped


# ---------------------------------------------------------------- upfirdn


def _naive_upfirdn(x, k, up, down, pad):
    """Direct definition on a dense grid: zero insertion, pad, true convolution, decimate."""
    b, c, h, w = x.shape
    big = torch.zeros(b, c, h * up, w * up, dtype=x.dtype)
    big[:, :, ::up, ::up] = x
    p0, p1 = pad
    big = F.pad(big, [p0, p1, p0, p1])
    kh, kw = k.shape
    oh, ow = big.shape[2] - kh + 1, big.shape[3] - kw + 1
    out = torch.zeros(b, c, oh, ow, dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            window = big[:, :, i:i + kh, j:j + kw]
            out[:, :, i, j] = (window * k.flip([0, 1])).sum((-1, -2))
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize(("up", "down", "pad"), [(1, 1, (1, 1)), (2, 1, (2, 1)), (1, 2, (1, 1)),
                                                 (2, 2, (1, 2)), (3, 1, (2, 2))])
def test_upfirdn2d_matches_naive_definition(up, down, pad):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    k = torch.randn(4, 4, dtype=torch.float64)  # asymmetric, so the flip matters
    # (pad0, pad1) on both axes, StyleGAN2's rosinality convention: (x0, x1, y0, y1) here
    out = upfirdn2d(x, k, up=up, down=down, padding=(*pad, *pad))
    torch.testing.assert_close(out, _naive_upfirdn(x, k, up, down, pad))


def test_upfirdn2d_negative_padding_crops():
    x = torch.randn(1, 1, 6, 6)
    delta = torch.ones(1, 1)
    assert torch.equal(upfirdn2d(x, delta, padding=(-1, -2, 0, 0)), x[:, :, :, 1:4])


def test_upsample_downsample_shapes_and_gain():
    up, down = Upsample((1, 3, 3, 1), 2), Downsample((1, 3, 3, 1), 2)
    assert up.pad == (2, 1) and down.pad == (1, 1)
    torch.testing.assert_close(up.kernel, make_kernel([1, 3, 3, 1]) * 4)
    x = torch.ones(1, 2, 8, 8)
    y = up(x)
    assert y.shape == (1, 2, 16, 16)
    torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.ones(1, 2, 12, 12))  # keeps the mean
    z = down(x)
    assert z.shape == (1, 2, 4, 4)
    torch.testing.assert_close(z[:, :, 1:-1, 1:-1], torch.ones(1, 2, 2, 2))
    assert Blur((1, 3, 3, 1), (2, 1))(x).shape == (1, 2, 8, 8)
    assert up.state_dict() == {}  # the kernel is derived, not saved


def test_make_kernel_errors():
    with pytest.raises(ValueError, match="sum to 0"):
        make_kernel([1, -1])
    with pytest.raises(ValueError, match=r"upfirdn2d expects a \(B, C, H, W\) tensor"):
        upfirdn2d(torch.zeros(2, 2), torch.ones(2, 2))


# ---------------------------------------------------------------- all layers: dtype, compile


def test_layers_compile_fullgraph():
    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mapping = MappingNetwork(16, 16, 2)
            self.ff = FourierFeatures(8)
            self.emb = CoordinateEmbedding(8, 8, 8)
            self.conv = StyledConv2d(16, 8, 3, 16, resolution=8)
            self.rgb = ToRGB(8, 16)

        def forward(self, z, skip):
            w = self.mapping(z, truncation_psi=0.7)
            x = torch.cat([self.ff(coordinate_grid(8, 8, batch_size=z.shape[0])),
                           self.emb(z.shape[0])], 1)
            x = self.conv(x, w, noise_mode="const")
            return self.rgb(x, w, skip)

    model = Tiny()
    z, skip = torch.randn(2, 16), torch.randn(2, 3, 4, 4)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(z, skip), model(z, skip))


def test_bfloat16_forward():
    layer = StyledConv2d(8, 8, 3, 8).to(torch.bfloat16)
    out = layer(torch.randn(2, 8, 4, 4, dtype=torch.bfloat16),
                torch.randn(2, 8, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


@pytest.mark.parametrize("k", [1, 3])
def test_upsampling_modconv_paths_agree_and_double_resolution(k):
    torch.manual_seed(0)
    layer = ModulatedConv2d(6, 5, k, 8, up=2)
    x, w = torch.randn(3, 6, 4, 5), torch.randn(3, 8)
    a = layer(x, w)
    assert a.shape == (3, 5, 8, 10)
    layer.path = "grouped"
    torch.testing.assert_close(layer(x, w), a, rtol=1e-5, atol=1e-5)
    # reference: per-sample modulated weights, transposed conv, blur
    weight = layer.weight * layer.weight_gain
    styles = layer.modulation(w)
    outs = []
    for b in range(3):
        wb = weight * styles[b][None, :, None, None]
        wb = wb / torch.sqrt(wb.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        y = F.conv_transpose2d(x[b:b + 1], wb.transpose(0, 1), stride=2)
        outs.append(layer.blur(y))
    torch.testing.assert_close(a, torch.cat(outs), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="up must be 1 or 2, got 4"):
        ModulatedConv2d(6, 5, 3, 8, up=4)
