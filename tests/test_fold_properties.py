"""Hypothesis properties of PixelFold / PixelUnfold: exact invertibility, pure permutation of
elements (pixel independence), intact patches and commutation with per-pixel maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from pixelfold.layers import PixelFold, PixelUnfold, pixel_fold, pixel_unfold

ORDERS = st.sampled_from(["pixelfolder", "pixel_shuffle"])
DTYPES = st.sampled_from(
    [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8,
     torch.bool]
)


@st.composite
def fold_inputs(draw, max_factor: int = 4):
    """A (B, C, H, W) tensor with H and W divisible by the drawn factor."""
    factor = draw(st.integers(1, max_factor))
    b = draw(st.integers(1, 3))
    c = draw(st.integers(1, 5))
    h = factor * draw(st.integers(1, 4))
    w = factor * draw(st.integers(1, 4))
    dtype = draw(DTYPES)
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=gen) * 50
    if dtype == torch.bool:
        x = x > 0
    elif dtype == torch.uint8:
        x = x.abs().clamp(max=255)
    x = x.to(dtype)
    channels_last = draw(st.booleans())
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, factor


@given(fold_inputs(), ORDERS)
def test_unfold_inverts_fold_exactly(data, order):
    x, factor = data
    fold = PixelFold(factor, channel_order=order)
    y = fold(x)
    b, c, h, w = x.shape
    assert y.shape == (b, c * factor * factor, h // factor, w // factor)
    assert y.dtype == x.dtype
    assert torch.equal(fold.inverse()(y), x)
    assert torch.equal(pixel_unfold(y, factor, order), x)


@given(fold_inputs(), ORDERS)
def test_fold_inverts_unfold_exactly(data, order):
    x, factor = data
    # reinterpret x as a folded tensor with C * factor^2 channels
    y = x.repeat(1, factor * factor, 1, 1)
    unfold = PixelUnfold(factor, channel_order=order)
    z = unfold(y)
    assert z.shape == (y.shape[0], x.shape[1], y.shape[2] * factor, y.shape[3] * factor)
    assert torch.equal(unfold.inverse()(z), y)
    assert torch.equal(pixel_fold(z, factor, order), y)


@given(fold_inputs(), ORDERS)
def test_fold_is_a_permutation_of_elements(data, order):
    """Folding an index tensor yields every index exactly once: each output element is exactly
    one input element, and each input element appears exactly once."""
    x, factor = data
    idx = torch.arange(x.numel()).reshape(x.shape)
    folded = pixel_fold(idx, factor, order)
    flat = folded.flatten()
    assert torch.equal(torch.sort(flat).values, torch.arange(x.numel()))
    # and the values travel with their indices
    assert torch.equal(pixel_fold(x, factor, order).flatten(), x.flatten()[flat])


@given(
    st.integers(1, 3), st.integers(1, 2), st.integers(1, 2), st.integers(1, 2), ORDERS
)
def test_fold_jacobian_is_a_permutation_matrix(factor, c, hq, wq, order):
    x = torch.randn(1, c, hq * factor, wq * factor, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda t: pixel_fold(t, factor, order), x)
    jac = jac.reshape(x.numel(), x.numel())
    assert set(jac.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(jac.sum(0), torch.ones(x.numel(), dtype=torch.float64))
    assert torch.equal(jac.sum(1), torch.ones(x.numel(), dtype=torch.float64))


@given(fold_inputs(), ORDERS)
def test_each_patch_lands_intact_in_one_channel_vector(data, order):
    """Output position (i, j) holds exactly the factor x factor patch at rows
    [i*f, (i+1)*f) and columns [j*f, (j+1)*f), in the documented channel order."""
    x, f = data
    b, c, h, w = x.shape
    y = pixel_fold(x, f, order)
    for i in range(h // f):
        for j in range(w // f):
            patch = x[:, :, i * f:(i + 1) * f, j * f:(j + 1) * f]  # (b, c, p1, p2)
            if order == "pixelfolder":
                expected = patch.permute(0, 2, 3, 1).reshape(b, -1)  # (p1 p2 c)
            else:
                expected = patch.reshape(b, -1)  # (c p1 p2)
            assert torch.equal(y[:, :, i, j], expected)


def _block_diagonal(weight: torch.Tensor, factor: int, order: str) -> torch.Tensor:
    """The 1x1 conv weight that applies ``weight`` (cout, cin) to every pixel of a folded
    tensor: kron(I, W) when channels are (p1 p2 c), kron(W, I) when (c p1 p2)."""
    eye = torch.eye(factor * factor, dtype=weight.dtype)
    if order == "pixelfolder":
        return torch.kron(eye, weight)
    return torch.kron(weight, eye)


@given(fold_inputs(max_factor=3), ORDERS, st.integers(1, 4), st.integers(0, 2**16))
def test_per_pixel_maps_commute_with_folding(data, order, cout, seed):
    """fold(f(x)) == f'(fold(x)) for a per-pixel map f (1x1 conv + pointwise nonlinearity) and
    its block-diagonal counterpart f' acting on folded channels. Integer-valued float64
    weights and inputs make every product and sum exact, so equality is bitwise."""
    x, factor = data
    x = x.to(torch.float64).round().clamp(-20, 20).contiguous()
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randint(-3, 4, (cout, x.shape[1]), generator=gen).to(torch.float64)
    bias = torch.randint(-3, 4, (cout,), generator=gen).to(torch.float64)

    def f(t):
        return torch.relu(F.conv2d(t, weight[:, :, None, None], bias))

    big_w = _block_diagonal(weight, factor, order)
    big_b = bias.repeat(factor * factor) if order == "pixelfolder" else \
        bias.repeat_interleave(factor * factor)

    def f_folded(t):
        return torch.relu(F.conv2d(t, big_w[:, :, None, None], big_b))

    assert torch.equal(pixel_fold(f(x), factor, order), f_folded(pixel_fold(x, factor, order)))


@given(fold_inputs(), ORDERS)
def test_module_and_functional_agree(data, order):
    x, factor = data
    assert torch.equal(PixelFold(factor, channel_order=order)(x), pixel_fold(x, factor, order))
