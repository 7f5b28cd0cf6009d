"""Loading the authors' discriminator (the ``d`` of their ``.pt``, rosinality's key names):
key mapping, shapes, errors, and the same logits as an independent re-implementation of it
(tests/reference/authors_discriminator.py); ``pixelfold convert`` writes it beside the
generator."""

from __future__ import annotations

import os

import pytest
import torch

from pixelfold.convert import (
    discriminator_key_map,
    load_official_discriminator,
    official_discriminator_spec,
)
from pixelfold.models import Discriminator, DiscriminatorSpec
from tests.reference.authors_discriminator import (
    AuthorsDiscriminator,
    authors_checkpoint_with_d,
    randomized,
)

TINY = {32: 16, 16: 32, 8: 32, 4: 32}
HEAVY = os.environ.get("PIXELFOLD_HEAVY_TESTS", "1") == "1"


def _expected_256_shapes() -> dict[str, tuple[int, ...]]:
    """The 50 tensors of the authors' 256 discriminator, transcribed from REFERENCE.md."""
    exp: dict[str, tuple[int, ...]] = {"convs.0.0.weight": (128, 3, 1, 1),
                                       "convs.0.1.bias": (128,)}
    widths = [128, 256, 512, 512, 512, 512, 512]  # at 256, 128, ..., 4
    for b in range(1, 7):
        cin, cout = widths[b - 1], widths[b]
        exp[f"convs.{b}.conv1.0.weight"] = (cin, cin, 3, 3)
        exp[f"convs.{b}.conv1.1.bias"] = (cin,)
        exp[f"convs.{b}.conv2.0.kernel"] = (4, 4)
        exp[f"convs.{b}.conv2.1.weight"] = (cout, cin, 3, 3)
        exp[f"convs.{b}.conv2.2.bias"] = (cout,)
        exp[f"convs.{b}.skip.0.kernel"] = (4, 4)
        exp[f"convs.{b}.skip.1.weight"] = (cout, cin, 1, 1)
    exp.update({"final_conv.0.weight": (512, 513, 3, 3), "final_conv.1.bias": (512,),
                "final_linear.0.weight": (512, 8192), "final_linear.0.bias": (512,),
                "final_linear.1.weight": (1, 512), "final_linear.1.bias": (1,)})
    return exp


def test_reference_discriminator_has_the_authors_keys_and_count():
    with torch.device("meta"):
        oracle, ours = AuthorsDiscriminator(256), Discriminator()
    sd = oracle.state_dict()
    assert len(sd) == 50
    assert {k: tuple(v.shape) for k, v in sd.items()} == _expected_256_shapes()
    assert sum(p.numel() for p in oracle.parameters()) == 28_864_129
    assert sum(p.numel() for p in ours.parameters()) == 28_864_129
    assert set(discriminator_key_map(6)) == set(sd)
    dropped = sorted(k for k, v in discriminator_key_map(6).items() if v is None)
    assert dropped == sorted([f"convs.{b}.{c}.0.kernel" for b in range(1, 7)
                              for c in ("conv2", "skip")])
    # every pixelfold tensor has exactly one source
    targets = [v for v in discriminator_key_map(6).values() if v is not None]
    assert sorted(targets) == sorted(ours.state_dict())
    spec = official_discriminator_spec(sd)
    assert spec.channels == {r: c for r, c in DiscriminatorSpec().channels.items() if r <= 256}
    assert (spec.resolution, spec.image_channels, spec.mbstd_num_channels) == (256, 3, 1)


@pytest.mark.parametrize(("size", "channels", "batch"),
                         [(32, TINY, 8), (64, {64: 8, 32: 16, 16: 16, 8: 24, 4: 16}, 4)])
def test_converted_discriminator_gives_the_authors_logits(size, channels, batch):
    torch.manual_seed(size)
    oracle = randomized(AuthorsDiscriminator(size, channels)).eval()
    D = load_official_discriminator(authors_checkpoint_with_d(None, oracle))
    assert D.spec.resolution == size and D.spec.channels == dict(sorted(channels.items()))
    images = torch.randn(batch, 3, size, size)  # batch 8: two minibatch-std groups of 4
    with torch.no_grad():
        theirs, ours = oracle(images), D(images)
    assert ours.shape == theirs.shape == (batch, 1)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    assert theirs.std() > 1e-3  # the images get different logits
    # the check has power: one bias mapped wrongly moves the logits by far more than 1e-4
    with torch.no_grad():
        D.blocks[1].conv0.act.bias.add_(0.1)
        assert (D(images) - theirs).abs().max() > 1e-3


@pytest.mark.skipif(not HEAVY, reason="PIXELFOLD_HEAVY_TESTS=0")
def test_converted_256_discriminator_gives_the_authors_logits(tmp_path):
    torch.manual_seed(0)
    oracle = randomized(AuthorsDiscriminator(256)).eval()
    path = tmp_path / "authors.pt"
    torch.save(authors_checkpoint_with_d(None, oracle), path)
    D = load_official_discriminator(path, resolution=256)
    assert sum(p.numel() for p in D.parameters()) == 28_864_129
    images = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(D(images), oracle(images), rtol=0, atol=1e-4)


def _bad(sd, change):
    sd = dict(sd)
    change(sd)
    return sd


@pytest.fixture(scope="module")
def tiny_state():
    torch.manual_seed(1)
    return randomized(AuthorsDiscriminator(32, TINY)).state_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda sd: sd.update({"convs.9.extra": torch.zeros(1)}),
         r"unknown key\(s\) in the discriminator: \['convs.9.extra'\]"),
        (lambda sd: sd.pop("convs.2.skip.1.weight"),
         r"lacks key\(s\): \['convs.2.skip.1.weight'\]"),
        (lambda sd: sd.update({"convs.1.conv1.1.bias": torch.zeros(7)}),
         r"convs.1.conv1.1.bias has shape \(7,\) but a 32x32 discriminator with these widths "
         r"needs \(16,\) for blocks.0.conv0.act.bias"),
        (lambda sd: sd.update({"convs.1.skip.0.kernel": torch.ones(4, 4)}),
         r"convs.1.skip.0.kernel is not the \[1, 3, 3, 1\] blur kernel"),
        (lambda sd: sd.pop("convs.0.0.weight"), "is not a bare discriminator state_dict"),
        (lambda sd: sd.pop("final_conv.0.weight"), "lacks 'final_conv.0.weight'"),
    ],
)
def test_errors_name_the_key(tiny_state, change, message):
    with pytest.raises(ValueError, match=message):
        load_official_discriminator(_bad(tiny_state, change))


def test_resolution_and_missing_d_errors(tiny_state):
    with pytest.raises(ValueError, match="discriminator is for 32x32 images, not 256x256"):
        load_official_discriminator(tiny_state, resolution=256)
    with pytest.raises(ValueError, match="checkpoint has no 'd' discriminator"):
        load_official_discriminator({"g": {}, "d": {}, "g_ema": {}})
    from pixelfold.utils import NonFiniteError

    bad = dict(tiny_state)
    bad["final_linear.1.weight"] = torch.full_like(bad["final_linear.1.weight"], float("inf"))
    with pytest.raises(NonFiniteError, match="final_linear.1.weight"):
        load_official_discriminator({"d": bad})


def test_cli_convert_writes_the_discriminator_beside_the_generator(tmp_path, capsys):
    from pixelfold.cli import main
    from pixelfold.models import Generator
    from tests.reference.authors_pixelfold import AuthorsPixelFolder

    torch.manual_seed(0)
    G_oracle = AuthorsPixelFolder(256).eval()
    with torch.device("meta"):  # a 256 discriminator without spending time on its init
        D_oracle = AuthorsDiscriminator(256)
    D_oracle = D_oracle.to_empty(device="cpu")
    with torch.no_grad():
        for name, t in D_oracle.state_dict().items():
            if name.endswith("kernel"):
                k = torch.tensor([1.0, 3.0, 3.0, 1.0])
                t.copy_(k[:, None] * k[None, :] / 64)
            else:
                t.normal_()
    src = tmp_path / "authors.pt"
    torch.save(authors_checkpoint_with_d(G_oracle, D_oracle), src)
    out = tmp_path / "converted"
    assert main(["convert", str(src), str(out), "--w-avg-samples", "10"]) == 0
    printed = capsys.readouterr().out
    assert "pixelfolder-256 (20,318,814 parameters)" in printed
    assert f"its discriminator (28,864,129 parameters) to {out / 'discriminator'}" in printed
    Generator.from_pretrained(out)
    D = Discriminator.from_pretrained(out / "discriminator")
    ours = D.state_dict()
    for theirs_key, key in discriminator_key_map(6).items():
        if key is not None:
            assert torch.equal(ours[key], D_oracle.state_dict()[theirs_key]), key
    assert main(["convert", str(src), str(out), "--w-avg-samples", "10", "--overwrite",
                 "--no-discriminator"]) == 0
    assert "discriminator" not in capsys.readouterr().out
    assert not (out / "discriminator").exists() and (out / "config.json").is_file()
