"""The residual StyleGAN2 discriminator: exact size, shapes, gradients, save/load, spec."""

from __future__ import annotations

import json

import pytest
import torch

from pixelfold.models import Discriminator, DiscriminatorSpec

TINY = {4: 16, 8: 16, 16: 8, 32: 8, 64: 4}


def _tiny(resolution: int, **kw) -> Discriminator:
    return Discriminator(DiscriminatorSpec(resolution=resolution, channels=TINY, **kw))


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _meta(resolution: int) -> Discriminator:
    with torch.device("meta"):
        return Discriminator(DiscriminatorSpec(resolution=resolution))


# ---------------------------------------------------------------- size and layout


def test_parameter_count_256_matches_authors():
    assert _count(_meta(256)) == 28_864_129  # the authors' discriminator, measured on their code


def test_parameter_count_by_hand():
    """Independent count: weights of every layer plus one bias per activated layer."""
    ch = DiscriminatorSpec().channels
    total = 3 * ch[256] + ch[256]  # from-RGB 1x1, bias in the activation
    r = 256
    while r > 4:
        cin, cout = ch[r], ch[r // 2]
        total += 9 * cin * cin + cin + 9 * cin * cout + cout + cin * cout  # skip has no bias
        r //= 2
    c = ch[4]
    total += 9 * (c + 1) * c + c + 16 * c * c + c + c + 1
    assert total == 28_864_129


def test_channel_flow_256():
    D = _meta(256)
    assert D.from_rgb.conv.weight.shape == (128, 3, 1, 1)
    flow = [(b.conv0.conv.in_channels, b.conv1.conv.out_channels) for b in D.blocks]
    assert flow == [(128, 256), (256, 512)] + [(512, 512)] * 4
    assert all(b.skip.conv.bias is None and not hasattr(b.skip.act, "bias") for b in D.blocks)
    assert D.final_conv.conv.weight.shape == (512, 513, 3, 3)
    assert D.final_linear.weight.shape == (512, 512 * 4 * 4)
    assert D.out.weight.shape == (1, 512)


def test_1024_builds_on_meta():
    D = _meta(1024)
    assert len(D.blocks) == 8
    assert D.from_rgb.conv.out_channels == 32


# ---------------------------------------------------------------- forward and backward


@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("batch", [1, 2, 3, 4, 8])
def test_forward_shapes(resolution, batch):
    D = _tiny(resolution)
    out = D(torch.randn(batch, 3, resolution, resolution))
    assert out.shape == (batch, 1)
    assert torch.isfinite(out).all()


def test_resolution_4_has_no_blocks():
    D = _tiny(4)
    assert len(D.blocks) == 0
    assert D(torch.randn(2, 3, 4, 4)).shape == (2, 1)


def test_batch_not_divisible_by_group_raises():
    D = _tiny(32)
    with pytest.raises(ValueError, match="divisible by 4, got 6"):
        D(torch.randn(6, 3, 32, 32))


def test_wrong_input_shape_raises():
    D = _tiny(32)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\), got \(2, 3, 64, 64\)"):
        D(torch.randn(2, 3, 64, 64))


def test_conv_gain_scales_the_output_and_must_be_positive():
    torch.manual_seed(0)
    D = Discriminator(DiscriminatorSpec(resolution=8, channels={4: 4, 8: 4}))
    with torch.no_grad():
        D.from_rgb.act.bias.normal_()
    x = torch.randn(2, 3, 8, 8)
    layer = D.from_rgb
    expected = layer.act(layer.conv(x))
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer(x, gain=0.5), 0.5 * expected)
    with pytest.raises(ValueError, match="gain must be positive.*got -1.0"):
        layer(x, gain=-1.0)


def test_minibatch_std_changes_output():
    """The mbstd statistic couples samples: the score of sample 0 depends on sample 1."""
    D = _tiny(32)
    x = torch.randn(2, 3, 32, 32)
    y = x.clone()
    y[1] += 1.0
    assert not torch.allclose(D(x)[0], D(y)[0])


def test_backward_reaches_every_parameter():
    D = _tiny(32)
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    D(x).sum().backward()
    for name, p in D.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    assert x.grad is not None


def test_residual_block_halves_resolution():
    D = _tiny(64)
    x = torch.randn(2, 4, 64, 64)
    assert D.blocks[0](x).shape == (2, 8, 32, 32)
    assert D.blocks[0].skip(x).shape == (2, 8, 32, 32)


# ---------------------------------------------------------------- save / load and the spec


def test_save_load_round_trip(tmp_path):
    D = _tiny(32)
    folder = D.save_pretrained(tmp_path / "d")
    config = json.loads((folder / "config.json").read_text())
    assert config["_class_name"] == "Discriminator"
    E = Discriminator.from_pretrained(folder)
    assert E.spec == D.spec
    for (k, a), (k2, b) in zip(D.state_dict().items(), E.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(D(x), E(x))


def test_spec_json_round_trip():
    spec = DiscriminatorSpec(resolution=64, channels=TINY, mbstd_group_size=2,
                             blur_kernel=(1, 2, 1))
    back = DiscriminatorSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec
    assert all(isinstance(k, int) for k in back.channels)
    assert DiscriminatorSpec.from_json(spec.to_json()) == spec
    assert DiscriminatorSpec.from_dict(DiscriminatorSpec().to_dict()) == DiscriminatorSpec()


def test_spec_accepts_string_keys_and_pairs():
    a = DiscriminatorSpec(resolution=8, channels={"4": 8, "8": 4})
    b = DiscriminatorSpec(resolution=8, channels=[[8, 4], [4, 8]])
    assert a.channels == b.channels == {4: 8, 8: 4}


def test_default_table():
    assert DiscriminatorSpec().channels == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512,
                                            128: 256, 256: 128, 512: 64, 1024: 32}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resolution": 48}, "resolution must be a power of two >= 4, got 48"),
        ({"resolution": 2}, "resolution must be a power of two >= 4, got 2"),
        ({"resolution": True}, "resolution must be a power of two"),
        ({"image_channels": 0}, "image_channels must be a positive integer, got 0"),
        ({"mbstd_group_size": 0}, "mbstd_group_size must be a positive integer, got 0"),
        ({"mbstd_num_channels": 3}, "mbstd_num_channels must divide channels"),
        ({"channels": {4: 512, 8: 512}}, r"no entry for resolution\(s\) \[256, 128, 64, 32, 16\]"),
        ({"channels": {4: 512, 6: 5}}, "keys must be powers of two >= 4, got 6"),
        ({"channels": {4: -1}}, r"channels\[4\] must be a positive integer, got -1"),
        ({"channels": 512}, "channels must be a"),
        ({"blur_kernel": ()}, "blur_kernel must be a non-empty"),
    ],
)
def test_spec_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiscriminatorSpec(**kwargs)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['colour'\]"):
        DiscriminatorSpec.from_dict({"resolution": 32, "colour": 1})
