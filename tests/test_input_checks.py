"""Inputs of the wrong type, dtype, device or size: models and layers say what to do instead of
failing inside PyTorch; empty batches give empty outputs; autocast, compile and export keep
working (their own tests are in test_models.py, test_layers.py and test_fold_api.py)."""

from __future__ import annotations

import pytest
import torch

from pixelfold.layers import (
    EqualConv2d,
    EqualLinear,
    InputError,
    MappingNetwork,
    ModulatedConv2d,
    PixelFold,
    PixelUnfold,
    StyledConv2d,
    ToRGB,
    check_input,
    pixel_fold,
    pixel_unfold,
)
from pixelfold.models import Discriminator, DiscriminatorSpec, Generator
from pixelfold.utils import PixelfoldError

TINY_D = dict(resolution=32, channels={4: 16, 8: 16, 16: 8, 32: 8})


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(0)
    return Generator.from_preset("pixelfolder-tiny-32").eval()


@pytest.fixture(scope="module")
def D() -> Discriminator:
    torch.manual_seed(0)
    return Discriminator(DiscriminatorSpec(**TINY_D)).eval()


def test_input_error_is_a_type_error_and_a_pixelfold_error():
    assert issubclass(InputError, TypeError) and issubclass(InputError, PixelfoldError)


# ---------------------------------------------------------------- generator


def test_half_latent_on_a_float_generator(G):
    with pytest.raises(InputError) as info:
        G(torch.randn(2, G.z_dim).half())
    assert str(info.value) == (
        "z is torch.float16 but the generator's weights are torch.float32: convert the model "
        "(G.half()) or the input (z.float()), or run under torch.autocast")


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8])
def test_integer_latent(G, dtype):
    with pytest.raises(InputError, match=rf"the generator expects z as a floating-point tensor "
                                         rf"\(e\.g\. torch\.randn\(B, 64\)\), got {dtype}"):
        G(torch.zeros(2, G.z_dim, dtype=dtype))


def test_double_latent_and_bfloat16_model(G):
    with pytest.raises(InputError, match=r"z is torch\.float64 .* \(G\.double\(\)\) or the "
                                         r"input \(z\.float\(\)\)"):
        G(torch.randn(1, G.z_dim, dtype=torch.float64))
    G16 = Generator.from_preset("pixelfolder-tiny-32").bfloat16().eval()
    with pytest.raises(InputError, match=r"z is torch\.float32 but the generator's weights are "
                                         r"torch\.bfloat16: convert the model \(G\.float\(\)\) "
                                         r"or the input \(z\.bfloat16\(\)\)"):
        G16(torch.randn(1, G.z_dim))
    with torch.no_grad():  # matching dtypes work
        out = G16(torch.randn(2, G.z_dim, dtype=torch.bfloat16), noise_mode="const")
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_latent_on_another_device(G):
    with pytest.raises(InputError, match=r"z is on meta but the generator's weights are on cpu: "
                                         r"move the input \(z\.to\('cpu'\)\) or the model "
                                         r"\(G\.to\('meta'\)\)"):
        G(torch.randn(2, G.z_dim, device="meta"))


def test_latent_that_is_not_a_tensor(G):
    with pytest.raises(TypeError, match="the generator expects z as a torch.Tensor, got a list"):
        G([[0.0] * G.z_dim])


def test_bfloat16_latent_under_autocast(G):
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        ref = G(z, noise_mode="const")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = G(z.bfloat16(), noise_mode="const")
            ws = G.mapping(z.bfloat16())
            img = G.synthesis(ws, noise_mode="const")  # bf16 ws into float32 weights
    assert out.shape == ref.shape and torch.isfinite(out).all() and torch.isfinite(img).all()
    assert (out.float() - ref).abs().max() < 0.2


def test_styles_of_the_wrong_dtype(G):
    ws = G.mapping(torch.randn(1, G.z_dim)).half()
    with pytest.raises(InputError, match=r"ws is torch\.float16 but the synthesis network's "
                                         r"weights are torch\.float32"):
        G.synthesis(ws)


def test_empty_batch_gives_empty_images(G):
    with torch.no_grad():
        out = G(torch.randn(0, G.z_dim), noise_mode="const")
        images, stages = G(torch.randn(0, G.z_dim), return_stages=True)
    assert out.shape == (0, 3, 32, 32) and images.shape == (0, 3, 32, 32)
    assert [s.shape for s in stages] == [(0, 3, 8, 8), (0, 3, 32, 32)]
    # with gradients too, and the tracked average is not touched by an empty batch
    G_train = Generator.from_preset("pixelfolder-tiny-32")
    before = G_train.mapping.w_avg.clone()
    out = G_train(torch.randn(0, G_train.z_dim), update_w_avg=True)
    assert out.shape == (0, 3, 32, 32)
    assert torch.equal(G_train.mapping.w_avg, before)


def test_mapping_network_input_checks():
    mapping = MappingNetwork(8, 8, 2)
    with pytest.raises(InputError, match=r"the mapping network expects z as a floating-point "
                                         r"tensor \(e\.g\. torch\.randn\(B, 8\)\), got "
                                         r"torch\.int64"):
        mapping(torch.ones(2, 8, dtype=torch.long))
    with pytest.raises(InputError, match=r"\(mapping\.half\(\)\)"):
        mapping(torch.randn(2, 8).half())
    assert mapping(torch.randn(0, 8)).shape == (0, 8)


# ---------------------------------------------------------------- discriminator


def test_discriminator_on_uint8_images(D):
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    with pytest.raises(InputError, match=r"the discriminator expects images as a floating-point "
                                         r"tensor in \[-1, 1\] \(uint8 pixels p as "
                                         r"p\.float\(\) / 127\.5 - 1\), got torch\.uint8"):
        D(images)
    assert D(images.float() / 127.5 - 1).shape == (4, 1)


def test_discriminator_dtype_device_and_empty_batch(D):
    with pytest.raises(InputError, match=r"images is torch\.float16 but the discriminator's "
                                         r"weights are torch\.float32: convert the model "
                                         r"\(D\.half\(\)\)"):
        D(torch.randn(4, 3, 32, 32).half())
    with pytest.raises(InputError, match="images is on meta but the discriminator's weights"):
        D(torch.randn(4, 3, 32, 32, device="meta"))
    assert D(torch.randn(0, 3, 32, 32)).shape == (0, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(D(torch.randn(4, 3, 32, 32).bfloat16())).all()


# ---------------------------------------------------------------- layers


def test_modulated_conv_checks_its_inputs():
    layer = ModulatedConv2d(4, 4, 3, 8)
    x, w = torch.randn(2, 4, 5, 5), torch.randn(2, 8)
    with pytest.raises(InputError, match=r"x is torch\.float16 but ModulatedConv2d's weights "
                                         r"are torch\.float32: convert the model "
                                         r"\(layer\.half\(\)\)"):
        layer(x.half(), w)
    with pytest.raises(InputError, match=r"ModulatedConv2d expects x as a floating-point "
                                         r"tensor, got torch\.int64"):
        layer(x.long(), w)
    with pytest.raises(InputError, match=r"w is torch\.float64 but ModulatedConv2d's weights"):
        layer(x, w.double())
    with pytest.raises(InputError, match="ModulatedConv2d expects x as a torch.Tensor, got a "
                                         "list"):
        layer([1.0], w)
    for module in (StyledConv2d(4, 4, 3, 8), ToRGB(4, 8, upsample=False)):
        with pytest.raises(InputError, match=r"x is torch\.bfloat16 but ModulatedConv2d"):
            module(x.bfloat16(), w)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = StyledConv2d(4, 4, 3, 8)(x.bfloat16(), w)
    assert out.dtype == torch.bfloat16


def test_equalized_layers_explain_a_failing_input():
    linear, conv = EqualLinear(4, 3), EqualConv2d(3, 2, 3)
    with pytest.raises(InputError, match=r"EqualLinear expects x as a floating-point tensor, "
                                         r"got torch\.int32"):
        linear(torch.ones(2, 4, dtype=torch.int32))
    with pytest.raises(InputError, match=r"x is torch\.bfloat16 but EqualConv2d's weights are "
                                         r"torch\.float32: convert the model "
                                         r"\(layer\.bfloat16\(\)\) or the input \(x\.float\(\)\)"):
        conv(torch.randn(1, 3, 8, 8).bfloat16())
    with pytest.raises(InputError, match="EqualLinear expects x as a torch.Tensor, got a list"):
        linear([1.0, 2.0, 3.0, 4.0])
    # a failure that is not about the input stays PyTorch's own error
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        linear(torch.randn(2, 5))


@pytest.mark.parametrize("fn", [PixelFold(2), PixelUnfold(2), pixel_fold, pixel_unfold],
                         ids=["PixelFold", "PixelUnfold", "pixel_fold", "pixel_unfold"])
def test_fold_layers_on_a_list(fn):
    name = getattr(fn, "__name__", type(fn).__name__)
    with pytest.raises(TypeError, match=rf"^{name} expects a torch\.Tensor \(B, C, H, W\), got "
                                        rf"a list$"):
        fn([[1.0, 2.0], [3.0, 4.0]])


def test_checked_layers_compile_without_graph_breaks():
    layer = ModulatedConv2d(4, 4, 3, 8)
    compiled = torch.compile(layer, fullgraph=True, backend="eager")
    x, w = torch.randn(2, 4, 5, 5), torch.randn(2, 8)
    torch.testing.assert_close(compiled(x, w), layer(x, w))


def test_check_input_accepts_matching_and_autocast_inputs():
    weight = torch.nn.Parameter(torch.randn(3, 3))
    check_input(torch.randn(2, 3), weight, "x", "test")  # same dtype and device: silent
    with torch.autocast("cpu", dtype=torch.bfloat16):
        check_input(torch.randn(2, 3).bfloat16(), weight, "x", "test")
    with pytest.raises(InputError, match="x is torch.bfloat16 but test's weights"):
        check_input(torch.randn(2, 3).bfloat16(), weight, "x", "test")
