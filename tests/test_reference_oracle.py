"""Fast checks of the independent authors'-layout oracle (tests/reference/authors_pixelfold.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from tests.reference.authors_pixelfold import (
    AuthorsPixelFolder,
    authors_checkpoint,
    fir_kernel_2x,
    fir_upsample_2x,
    fold,
    modulated_conv2d,
    unfold,
)

# Exact parameter counts measured on the authors' code.
EXPECTED_PARAMS = {256: 20_843_614, 512: 17_478_430, 1024: 21_141_096}
UNUSED_MERGE_PARAMS = 1024 * 512 + 512


def _meta_model(size: int) -> AuthorsPixelFolder:
    with torch.device("meta"):
        return AuthorsPixelFolder(size)


def _expected_256_shapes() -> dict[str, tuple[int, ...]]:
    """The 127 keys of the authors' 256 checkpoint, as their published ``.pt`` file holds them."""
    exp: dict[str, tuple[int, ...]] = {}
    for i in range(1, 9):
        exp[f"style.{i}.weight"] = (512, 512)
        exp[f"style.{i}.bias"] = (512,)
    exp["input.input"] = (1, 512, 16, 16)
    exp["posfolders.0.conv0.0.weight"] = (512, 1024, 1, 1)
    exp["posfolders.0.conv0.1.bias"] = (512,)
    for i, c in enumerate([512, 512, 128]):
        exp[f"lffs.{i}.ffm.conv.weight"] = (c, 2, 1, 1)
        exp[f"lffs.{i}.ffm.conv.bias"] = (c,)
        exp[f"posfolders.{i}.conv1.0.weight"] = (32, c, 1, 1)
        exp[f"posfolders.{i}.conv1.1.bias"] = (32,)
        exp[f"posfolders.{i}.conv_merge.0.weight"] = (512, 1024, 1, 1)
        exp[f"posfolders.{i}.conv_merge.1.bias"] = (512,)
    widths = [(512, 512), (128, 512)] * 4 + [(512, 256), (64, 256), (256, 128), (32, 128)]
    for k, (cin, cout) in enumerate(widths):
        exp[f"convs.{k}.conv.weight"] = (1, cout, cin, 3, 3)
        exp[f"convs.{k}.conv.modulation.weight"] = (cin, 512)
        exp[f"convs.{k}.conv.modulation.bias"] = (cin,)
        exp[f"convs.{k}.noise.weight"] = (1,)
        exp[f"convs.{k}.activate.bias"] = (cout,)
    for j, c in enumerate([512, 512, 512, 512, 256, 128]):
        exp[f"to_rgbs.{j}.bias"] = (1, 3, 1, 1)
        exp[f"to_rgbs.{j}.conv.weight"] = (1, 3, c, 1, 1)
        exp[f"to_rgbs.{j}.conv.modulation.weight"] = (c, 512)
        exp[f"to_rgbs.{j}.conv.modulation.bias"] = (c,)
        exp[f"to_rgbs.{j}.upsample.kernel"] = (4, 4)
    return exp


def test_state_dict_keys_and_shapes_256() -> None:
    sd = _meta_model(256).state_dict()
    assert len(sd) == 127
    assert {k: tuple(v.shape) for k, v in sd.items()} == _expected_256_shapes()


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_exact_parameter_counts(size: int) -> None:
    model = _meta_model(size)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[size]


def test_512_and_1024_layout_details() -> None:
    sd512 = _meta_model(512).state_dict()
    assert tuple(sd512["input.input"].shape) == (1, 512, 32, 32)
    assert tuple(sd512["posfolders.2.conv1.0.weight"].shape) == (16, 64, 1, 1)
    assert tuple(sd512["posfolders.2.conv_merge.0.weight"].shape) == (256, 512, 1, 1)
    sd1024 = _meta_model(1024).state_dict()
    assert len([k for k in sd1024 if k.startswith("convs.") and k.endswith("conv.weight")]) == 16
    assert tuple(sd1024["posfolders.3.conv1.0.weight"].shape) == (8, 32, 1, 1)
    assert tuple(sd1024["posfolders.3.conv_merge.0.weight"].shape) == (128, 256, 1, 1)
    assert tuple(sd1024["posfolders.0.conv_merge.0.weight"].shape) == (512, 1024, 1, 1)


def test_forward_shape_unused_merge_and_checkpoint() -> None:
    model = AuthorsPixelFolder(256)
    # random noise so that the noise weights take part in the graph too
    img = model(torch.randn(1, 512), noise_mode="random")
    assert img.shape == (1, 3, 256, 256)
    assert torch.isfinite(img).all()
    img.square().mean().backward()
    unused = model.posfolders[0].conv_merge
    assert all(p.grad is None for p in unused.parameters())
    assert sum(p.numel() for p in unused.parameters()) == UNUSED_MERGE_PARAMS
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert sorted(no_grad) == ["posfolders.0.conv_merge.0.weight", "posfolders.0.conv_merge.1.bias"]

    ckpt = authors_checkpoint(model)
    assert set(ckpt) == {"g", "d", "g_ema", "g_optim", "d_optim"}
    assert ckpt["g"].keys() == ckpt["g_ema"].keys() == model.state_dict().keys()
    reloaded = AuthorsPixelFolder(256)
    reloaded.load_state_dict(ckpt["g_ema"])
    z = torch.randn(1, 512)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(z), model(z))


def test_fold_order_matches_rearrange() -> None:
    x = torch.randn(2, 3, 8, 6)
    ref = rearrange(x, "b c (h p1) (w p2) -> b (p1 p2 c) h w", p1=2, p2=2)
    assert torch.equal(fold(x), ref)
    assert torch.equal(unfold(fold(x)), x)
    assert not torch.equal(fold(x), F.pixel_unshuffle(x, 2))


def test_fir_upsample_and_modconv() -> None:
    # DC gain 1 away from the borders; equals a transposed conv with the same kernel.
    k = fir_kernel_2x()
    x = torch.randn(2, 3, 5, 5)
    up = fir_upsample_2x(x, k)
    assert up.shape == (2, 3, 10, 10)
    ones = fir_upsample_2x(torch.ones(1, 1, 6, 6), k)
    torch.testing.assert_close(ones[..., 2:-2, 2:-2], torch.ones(1, 1, 8, 8))
    alt = F.conv_transpose2d(x, k.expand(3, 1, 4, 4), stride=2, groups=3)[..., 1:-1, 1:-1]
    torch.testing.assert_close(up, alt)

    # grouped per-sample modulated conv == a per-sample loop
    w = torch.randn(1, 4, 3, 3, 3)
    s = torch.randn(2, 3)
    out = modulated_conv2d(x, w, s, demodulate=True)
    for b in range(2):
        wb = w[0] * s[b].view(1, 3, 1, 1) / 27**0.5
        wb = wb / (wb.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
        torch.testing.assert_close(out[b : b + 1], F.conv2d(x[b : b + 1], wb, padding=1))
